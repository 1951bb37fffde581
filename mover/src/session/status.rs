//! `mover status ID`: asks a receiving daemon how a striped transfer is doing (PROTOCOL.md §8.6), the
//! way to learn the end of a `push --via ... --detach`.

use super::error::SessionError;
use crate::connect::{start_client, ClientAuth, ConnectError, MoverUrl};
use crate::wire::control::{ControlMsg, TransferStatus};
use std::time::Duration;

/// Asks the daemon at `server` (`mover://HOST[:PORT]`) about transfer `transfer`.
pub fn transfer_status(
    server: &str,
    auth: &ClientAuth,
    transfer: &str,
    timeout: Duration,
) -> Result<TransferStatus, SessionError> {
    let url = MoverUrl::parse(server)?;
    let addr = url.socket_addr()?;
    let stream = std::net::TcpStream::connect_timeout(&addr, timeout)
        .map_err(|error| ConnectError::Connect { target: format!("{}:{}", url.host, url.port), error })?;
    let mut ch = start_client(stream, &url.host, auth, timeout)?;
    ch.send(&ControlMsg::StatusQuery { transfer: transfer.to_string() })
        .map_err(|e| SessionError::lost(format!("sending to {}: {e}", ch.peer_addr())))?;
    loop {
        match ch.expect_msg(Duration::from_secs(60), "waiting for the status").map_err(SessionError::lost)? {
            ControlMsg::StatusReply(s) => return Ok(s),
            ControlMsg::Queued { .. } => continue,
            ControlMsg::Error { message } => return Err(SessionError::Refused { who: "server", message }),
            other => return Err(SessionError::Protocol(format!("unexpected answer to a status query: {other:?}"))),
        }
    }
}
