//! The pinned-core pipeline's building blocks: lock-free rings between stages and buffers named by index.

pub mod ring;
