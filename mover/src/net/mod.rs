//! Sockets: batched UDP for data, TCP for the control channel.
