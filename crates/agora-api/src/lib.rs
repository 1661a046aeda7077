//! Management of accounts, members, invitations, profiles, toolkits and personal tokens: one
//! service layer, role-checked and audited, under both `agora admin` and the management API.

pub mod http;
pub mod service;

pub use http::{API_PREFIX, router};
pub use service::{Actor, InvitationRequest, Service, ServiceError};
