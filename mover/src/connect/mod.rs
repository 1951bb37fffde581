//! Connection set-up, before a session starts: `mover://` URLs and `[user@]host:PATH` operands, TLS and
//! the daemon's credentials (tokens, client certificates), and SSH, whose pipes carry the control channel.
//! What comes out is an authenticated [`ControlChannel`](crate::net::ControlChannel); the `session` layer
//! runs sessions over it, whatever carries it.
//!
//! Floor: above `net`, `wire` and `files`; beside `pipeline`; never imports `session` or `cmd`.

mod addr;
mod auth;
mod delegation;
mod error;
mod queued;
mod ssh;
mod stdio;
mod token_file;
mod url;

pub use addr::unspecified;
pub use auth::{
    accept_client, authenticate_client, connect_client, new_token, send_accepted, start_client, ClientAuth, ClientTls,
    Identity, ServerAuth, ServerTls, TokenTable, AUTH_TIMEOUT, INSECURE_WARNING, MAX_USER_LEN,
};
pub use auth::{fetch_capability_digest, FETCH_FILE, FETCH_USER_PREFIX};
pub use delegation::{delegated_transfer, Delegations, Grant, DELEGATED_IDENTITY_PREFIX, DELEGATE_USER_PREFIX};
pub use error::ConnectError;
pub use queued::QueuePlace;
pub use ssh::{shell_quote, Location, SshLink, SshOptions, SshTarget};
pub use stdio::{accept_stdio, parse_ssh_connection};
pub use token_file::read_token_file;
pub use url::{MoverUrl, DEFAULT_PORT};
