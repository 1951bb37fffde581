//! The UDP data socket of a session, on either side.

use super::error::SessionError;
use crate::net::DataSocket;
use std::net::SocketAddr;

/// Socket buffer size asked for: bursts at 10 Gbit/s must not overflow while the loop writes to disk.
pub const SOCKET_BUFFER_BYTES: usize = 64 << 20;

/// A data socket bound to `local` (and connected to `peer`, on the sending side), with buffers of
/// [`SOCKET_BUFFER_BYTES`].
pub fn bind_data_socket(local: SocketAddr, peer: Option<SocketAddr>) -> Result<DataSocket, SessionError> {
    let mut sock = DataSocket::bind(local).map_err(udp_socket)?;
    if let Some(peer) = peer {
        sock.connect(peer).map_err(udp_socket)?;
    }
    sock.set_buffer_bytes(SOCKET_BUFFER_BYTES);
    Ok(sock)
}

/// A failed operation on the data socket.
pub fn udp_socket(error: std::io::Error) -> SessionError {
    SessionError::Io { what: "UDP socket", error }
}
