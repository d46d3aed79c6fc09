//! Authentication state machines. They exchange messages as bytes and never touch a socket.

pub mod fuzzing;
pub mod scram;
