//! Who is calling. The authentication layer puts a [`Principal`] into every
//! request's extensions; with authentication disabled every caller is the
//! anonymous principal.

/// How a principal was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Jwt,
    ClientCert,
    Anonymous,
}

/// The caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub`, or the client certificate's subject; `anonymous`
    /// when authentication is disabled.
    pub subject: String,
    pub groups: Vec<String>,
    pub scopes: Vec<String>,
    pub method: AuthMethod,
}

impl Principal {
    pub fn anonymous() -> Principal {
        Principal {
            subject: "anonymous".to_string(),
            groups: Vec::new(),
            scopes: Vec::new(),
            method: AuthMethod::Anonymous,
        }
    }
}
