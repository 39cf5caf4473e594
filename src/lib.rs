//! # realtime: three ways a web server pushes data to a browser
//!
//! (The guided tour is written out as the protocols land.)

#![deny(unsafe_code)]

pub mod app;
pub mod broker;
pub mod config;
pub mod connection;
#[doc(hidden)]
pub mod fuzz;
pub mod http;
pub mod json;
pub mod longpoll;
pub mod random;
pub mod server;
pub mod sse;
pub mod stats;
pub mod stream;
pub mod subscription;
pub mod ws;
