//! The TCP transport (design.md, decisions 4 and 7): servers answer frames on a tokio runtime of
//! their own; workers talk to them through a blocking client, because the worker's hot loop is
//! synchronous and one request per server in flight needs no async machinery.
//!
//! A connection starts with a Hello carrying the shared token, answered by Ack. Then each Pull is
//! answered by Values and each Push by Ack, with the request's id. A request the server refuses
//! (unsorted keys, a foreign key, an unknown table) is answered by an Error frame and the
//! connection stays usable; a frame that breaks the protocol (over the size bound, another version,
//! an unknown kind, a malformed payload, anything before Hello) is answered by an Error frame when
//! possible and its connection is closed. Other connections are never affected.

mod client;
mod server;

pub use client::{ClientOptions, TcpClient};
pub use server::{serve, ServeConfig, TcpServerHandle};

#[cfg(test)]
mod tests;
