//! OpenID Connect sign-in (the relying party): the authorization code flow with PKCE and a
//! nonce; the ID token's signature (the provider's published keys), issuer, audience, expiry and
//! nonce are checked by `openidconnect` before any claim is read.
//!
//! The provider is discovered on first use and its metadata kept; a provider that is down is an
//! error of that sign-in only. The HTTP client follows no redirects (no SSRF through the
//! provider's metadata) and trusts the system's CAs or the configured bundle.

use std::path::PathBuf;
use std::time::Duration;

use openidconnect::core::{CoreClient, CoreProviderMetadata, CoreResponseType};
use openidconnect::{
    AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope,
};
use serde_json::{Map, Value};
use tokio::sync::RwLock;
use zeroize::Zeroizing;

/// One OpenID provider.
#[derive(Clone)]
pub struct OidcSettings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Zeroizing<String>,
    /// Where the provider sends the browser back: Portcullis's `/auth/oidc/callback`.
    pub redirect_url: String,
    pub scopes: Vec<String>,
    /// PEM CA bundle for the provider's certificate; `None`: the built-in web PKI roots.
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the sign-in provider at {issuer} cannot be used: {reason}")]
    Provider { issuer: String, reason: String },
    #[error("the sign-in provider's answer was refused: {0}")]
    Answer(String),
    #[error("{0}")]
    Invalid(String),
}

/// A started sign-in: the URL to send the browser to and what must be kept until it returns.
pub struct Started {
    pub url: String,
    pub state: Zeroizing<String>,
    pub nonce: Zeroizing<String>,
    pub pkce_verifier: Zeroizing<String>,
}

/// The verified ID token's claims, as a JSON object.
#[derive(Debug, Clone)]
pub struct Claims(pub Map<String, Value>);

impl Claims {
    pub fn text(&self, name: &str) -> Option<String> {
        self.0.get(name).and_then(Value::as_str).map(str::to_owned).filter(|s| !s.trim().is_empty())
    }

    /// A claim holding a list of strings (or one string).
    pub fn list(&self, name: &str) -> Vec<String> {
        match self.0.get(name) {
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        }
    }
}

pub struct Oidc {
    settings: OidcSettings,
    http: reqwest::Client,
    metadata: RwLock<Option<CoreProviderMetadata>>,
}

impl Oidc {
    pub fn new(settings: OidcSettings) -> Result<Oidc, OidcError> {
        IssuerUrl::new(settings.issuer.clone()).map_err(|e| OidcError::Invalid(format!("oidc.issuer: {e}")))?;
        RedirectUrl::new(settings.redirect_url.clone())
            .map_err(|e| OidcError::Invalid(format!("oidc.public_url: {e}")))?;
        let mut http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout);
        if let Some(path) = &settings.ca_file {
            let pem =
                std::fs::read(path).map_err(|e| OidcError::Invalid(format!("oidc.ca_file {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| OidcError::Invalid(format!("oidc.ca_file {}: {e}", path.display())))?;
            for c in certs {
                http = http.add_root_certificate(c);
            }
        }
        let http = http.build().map_err(|e| OidcError::Invalid(e.to_string()))?;
        Ok(Oidc { settings, http, metadata: RwLock::new(None) })
    }

    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    fn provider_error(&self, reason: impl std::fmt::Display) -> OidcError {
        OidcError::Provider { issuer: self.settings.issuer.clone(), reason: reason.to_string() }
    }

    async fn metadata(&self) -> Result<CoreProviderMetadata, OidcError> {
        if let Some(m) = self.metadata.read().await.as_ref() {
            return Ok(m.clone());
        }
        let issuer = IssuerUrl::new(self.settings.issuer.clone()).map_err(|e| self.provider_error(e))?;
        let m = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| self.provider_error(format!("discovery failed: {}", chain(&e))))?;
        *self.metadata.write().await = Some(m.clone());
        Ok(m)
    }

    async fn client(
        &self,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        OidcError,
    > {
        let metadata = self.metadata().await?;
        let redirect =
            RedirectUrl::new(self.settings.redirect_url.clone()).map_err(|e| OidcError::Invalid(e.to_string()))?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.settings.client_id.clone()),
            Some(ClientSecret::new(self.settings.client_secret.to_string())),
        )
        .set_redirect_uri(redirect))
    }

    /// Starts a sign-in: the provider's authorization URL with a fresh state, nonce and PKCE
    /// challenge (S256).
    pub async fn start(&self) -> Result<Started, OidcError> {
        let client = self.client().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = client.authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for s in &self.settings.scopes {
            if s != "openid" {
                req = req.add_scope(Scope::new(s.clone()));
            }
        }
        let (url, state, nonce) = req.set_pkce_challenge(challenge).url();
        Ok(Started {
            url: url.to_string(),
            state: Zeroizing::new(state.secret().clone()),
            nonce: Zeroizing::new(nonce.secret().clone()),
            pkce_verifier: Zeroizing::new(verifier.secret().clone()),
        })
    }

    /// Exchanges the code for tokens and returns the ID token's claims once verified.
    pub async fn finish(&self, code: &str, pkce_verifier: &str, nonce: &str) -> Result<Claims, OidcError> {
        let client = self.client().await?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| self.provider_error(e))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Answer(format!("the code exchange failed: {}", chain(&e))))?;
        use openidconnect::TokenResponse;
        let id_token = response.id_token().ok_or_else(|| OidcError::Answer("no ID token in the answer".into()))?;
        let verifier = client.id_token_verifier();
        id_token
            .claims(&verifier, &Nonce::new(nonce.to_owned()))
            .map_err(|e| OidcError::Answer(format!("the ID token is not valid: {}", chain(&e))))?;
        // Verified above (signature, issuer, audience, expiry, nonce): read every claim of the
        // same token, the provider's own ones (groups, amr) included.
        let jwt = id_token.to_string();
        let payload = jwt.split('.').nth(1).ok_or_else(|| OidcError::Answer("malformed ID token".into()))?;
        let bytes =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload.trim_end_matches('='))
                .map_err(|_| OidcError::Answer("malformed ID token".into()))?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(Claims(map)),
            _ => Err(OidcError::Answer("malformed ID token claims".into())),
        }
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
