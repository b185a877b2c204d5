//! Local stand-ins that make cmek-provisioner testable without AWS or
//! Anthropic: the Admin API ([`admin_api`]), a Lambda service that runs the
//! real function binaries ([`lambda_host`]), and the whole stack around moto
//! ([`stack`]).

pub mod admin_api;
pub mod aws_data;
pub mod aws_proxy;
pub mod bench;
pub mod deployment;
pub mod diagram;
pub mod iam_eval;
pub mod iam_request;
pub mod lambda_host;
pub mod preflight;
pub mod sam;
pub mod stack;
pub mod template;
