//! Workloads run on the model: user programs whose memory behaviour the reference runs
//! recorded.

pub mod shmwork;
