//! The browser side of the code flow: `/oauth/auth`, the sign-in forms (password or emailed code),
//! consent, and the redirect back to the client with a code.
//!
//! Until the client and redirect URI are known good, errors are shown as a page, never redirected
//! (no open redirect). After that, errors go back to the client as RFC 6749 §4.1.2.1 parameters.

use std::sync::Arc;

use agora_core::client::{Client, GrantType};
use agora_core::scope::Scopes;
use agora_core::user::User;
use agora_store::AuthRequest;
use agora_store::secret::{random_token, token_digest};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use url::Url;

use crate::error::ErrorCode;
use crate::extract::{ClientIp, OAuthForm, cookie, set_cookie};
use crate::pages::{self, FormContext};
use crate::tokens::is_pkce_value;
use crate::{AuthServer, now, password};

pub(crate) const SESSION_COOKIE: &str = "agora_session";
pub(crate) const CSRF_COOKIE: &str = "agora_csrf";
const AUTH_REQUEST_TTL: i64 = 600;
const LOGIN_CODE_TTL: i64 = 600;
const RATE_WINDOW: i64 = 900;
/// Failed passwords for one account from one address before that address is locked out of it.
const MAX_FAILURES_PER_ACCOUNT_AND_IP: i64 = 10;
/// Failed passwords for one account from everywhere (a distributed guess) before it is locked.
const MAX_FAILURES_PER_ACCOUNT: i64 = 100;
const MAX_ATTEMPTS_PER_IP: i64 = 50;
const MAX_CODES_PER_ACCOUNT: i64 = 5;

#[derive(Deserialize, Default)]
pub struct AuthorizeParams {
    client_id: Option<String>,
    redirect_uri: Option<String>,
    response_type: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    prompt: Option<String>,
    max_age: Option<String>,
    resource: Option<String>,
    response_mode: Option<String>,
    request: Option<String>,
    request_uri: Option<String>,
}

type Server = State<Arc<AuthServer>>;

pub async fn start_get(
    State(server): Server,
    headers: HeaderMap,
    params: Result<Query<AuthorizeParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match params {
        Ok(Query(params)) => start(&server, &headers, params).await,
        Err(e) => pages::error(StatusCode::BAD_REQUEST, &format!("Malformed authorization request: {}", e.body_text())),
    }
}

pub async fn start_post(
    State(server): Server,
    headers: HeaderMap,
    params: Result<OAuthForm<AuthorizeParams>, crate::error::OAuthError>,
) -> Response {
    match params {
        Ok(OAuthForm(params)) => start(&server, &headers, params).await,
        Err(e) => pages::error(e.status, &format!("Malformed authorization request: {}", e.description)),
    }
}

/// Where errors go once the redirect URI is trusted.
struct ErrorRedirect<'a> {
    redirect_uri: &'a str,
    state: Option<&'a str>,
}

impl AuthServer {
    fn redirect_with(&self, redirect_uri: &str, params: &[(&str, &str)]) -> Response {
        let Ok(mut url) = Url::parse(redirect_uri) else {
            return pages::error(StatusCode::BAD_REQUEST, "The application's redirect URI is invalid.");
        };
        {
            let mut query = url.query_pairs_mut();
            for (k, v) in params {
                query.append_pair(k, v);
            }
            // RFC 9207: tell the client which issuer answers, against mix-up attacks.
            query.append_pair("iss", &self.config.issuer());
        }
        found(url.as_str())
    }

    fn redirect_error(&self, to: &ErrorRedirect, code: ErrorCode, description: &str) -> Response {
        let mut params = vec![("error", code.as_str()), ("error_description", description)];
        if let Some(state) = to.state {
            params.push(("state", state));
        }
        self.redirect_with(to.redirect_uri, &params)
    }

    pub(crate) fn csrf_token_for(&self, binding: &str, request_id: &str) -> String {
        let tag = aws_lc_rs::hmac::sign(&self.csrf_key, format!("{binding}|{request_id}").as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
    }

    /// True when `token` is the CSRF token of this browser (its `agora_csrf` cookie) for `request_id`.
    pub(crate) fn csrf_valid(&self, headers: &HeaderMap, request_id: &str, token: &str) -> bool {
        let Some(binding) = cookie(headers, CSRF_COOKIE) else { return false };
        let expected = self.csrf_token_for(binding, request_id);
        aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), token.as_bytes()).is_ok()
    }

    /// The browser's CSRF binding, and a `Set-Cookie` when it has none yet.
    pub(crate) fn csrf_binding(&self, headers: &HeaderMap) -> (String, Option<String>) {
        match cookie(headers, CSRF_COOKIE).filter(|v| v.len() >= 32) {
            Some(existing) => (existing.to_owned(), None),
            None => {
                let fresh = random_token("");
                let set = set_cookie(CSRF_COOKIE, &fresh, 86400, self.config.secure_cookies());
                (fresh, Some(set))
            }
        }
    }

    /// Renders a form page with a CSRF token bound to this browser and request.
    pub(crate) fn form_page(
        &self,
        headers: &HeaderMap,
        request_id: &str,
        render: impl FnOnce(&str) -> Response,
    ) -> Response {
        let (binding, set) = self.csrf_binding(headers);
        let mut response = render(&self.csrf_token_for(&binding, request_id));
        if let Some(set) = set.and_then(|s| HeaderValue::from_str(&s).ok()) {
            response.headers_mut().append(header::SET_COOKIE, set);
        }
        response
    }

    /// The signed-in user of this browser, if any.
    pub(crate) async fn session_user(&self, headers: &HeaderMap) -> Option<(User, i64)> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let (user_id, auth_time) = self.store.browser_session(&token_digest(id), now()).await.ok()??;
        let user = self.store.user_by_id(&user_id).await.ok()??;
        Some((user, auth_time))
    }

    /// Digest under which an emailed code is stored: keyed, and bound to the code's id.
    fn login_code_digest(&self, code_id: &str, code: &str) -> String {
        let tag = aws_lc_rs::hmac::sign(&self.login_code_key, format!("{code_id}|{code}").as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
    }

    /// True when any (bucket, limit) pair is at its limit in the current window.
    async fn rate_limited_any(&self, buckets: &[(&str, i64)]) -> bool {
        for (bucket, limit) in buckets {
            if self.rate_limited(bucket, *limit).await {
                return true;
            }
        }
        false
    }

    async fn rate_limited(&self, bucket: &str, limit: i64) -> bool {
        let window = now() / RATE_WINDOW * RATE_WINDOW;
        self.store.rate_limit_count(bucket, window).await.map_or(true, |hits| hits >= limit)
    }

    async fn rate_hit(&self, bucket: &str) {
        let window = now() / RATE_WINDOW * RATE_WINDOW;
        if let Err(e) = self.store.rate_limit_hit(bucket, window).await {
            tracing::error!(error = %e, "cannot record rate-limit hit");
        }
    }
}

fn found(location: &str) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn start(server: &AuthServer, headers: &HeaderMap, params: AuthorizeParams) -> Response {
    let Some(client_id) = params.client_id.as_deref().filter(|c| !c.is_empty()) else {
        return pages::error(StatusCode::BAD_REQUEST, "The request names no client (client_id is missing).");
    };
    let client = match server.client(client_id).await {
        Ok(Some(client)) => client,
        Ok(None) => return pages::error(StatusCode::BAD_REQUEST, "Unknown application (client_id is not registered)."),
        Err(e) => return pages::error(e.status, &e.description),
    };
    let redirect_uri = match params.redirect_uri.as_deref() {
        Some(uri) if client.redirect_uri_allowed(uri) => uri.to_owned(),
        Some(_) => {
            return pages::error(StatusCode::BAD_REQUEST, "The redirect URI is not registered for this application.");
        }
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        None => return pages::error(StatusCode::BAD_REQUEST, "The request has no redirect_uri."),
    };
    let to = ErrorRedirect { redirect_uri: &redirect_uri, state: params.state.as_deref() };

    if params.request.is_some() || params.request_uri.is_some() {
        return server.redirect_error(&to, ErrorCode::InvalidRequest, "request objects are not supported");
    }
    if params.response_mode.as_deref().is_some_and(|m| m != "query") {
        return server.redirect_error(&to, ErrorCode::InvalidRequest, "only response_mode=query is supported");
    }
    match params.response_type.as_deref() {
        Some("code") => {}
        None => return server.redirect_error(&to, ErrorCode::InvalidRequest, "response_type is required"),
        Some(_) => {
            return server.redirect_error(
                &to,
                ErrorCode::UnsupportedResponseType,
                "only response_type=code is supported",
            );
        }
    }
    if !client.allows_grant(GrantType::AuthorizationCode) {
        return server.redirect_error(
            &to,
            ErrorCode::UnauthorizedClient,
            "this client may not use the authorization code flow",
        );
    }
    let Some(challenge) = params.code_challenge.as_deref() else {
        return server.redirect_error(
            &to,
            ErrorCode::InvalidRequest,
            "PKCE is required: send code_challenge with code_challenge_method=S256",
        );
    };
    if params.code_challenge_method.as_deref() != Some("S256") {
        return server.redirect_error(&to, ErrorCode::InvalidRequest, "code_challenge_method must be S256");
    }
    if !is_pkce_value(challenge) {
        return server.redirect_error(&to, ErrorCode::InvalidRequest, "code_challenge is malformed");
    }
    let scope = match Scopes::parse(params.scope.as_deref().unwrap_or("openid")) {
        Ok(scope) if !scope.is_empty() => scope,
        Ok(_) => return server.redirect_error(&to, ErrorCode::InvalidScope, "scope is empty"),
        Err(e) => return server.redirect_error(&to, ErrorCode::InvalidScope, &e.to_string()),
    };
    if let Some(Err(e)) = params.resource.as_deref().map(|r| server.config.check_resource(r)) {
        return server.redirect_error(&to, ErrorCode::InvalidTarget, &e.description);
    }
    let max_age = match params.max_age.as_deref().map(str::parse::<i64>) {
        None => None,
        Some(Ok(age)) if age >= 0 => Some(age),
        Some(_) => {
            return server.redirect_error(&to, ErrorCode::InvalidRequest, "max_age must be a non-negative integer");
        }
    };
    let prompts: Vec<&str> = params.prompt.as_deref().unwrap_or("").split(' ').filter(|p| !p.is_empty()).collect();
    if prompts.contains(&"none") && prompts.len() > 1 {
        return server.redirect_error(&to, ErrorCode::InvalidRequest, "prompt=none cannot be combined");
    }

    let request = AuthRequest {
        id: uuid::Uuid::new_v4().to_string(),
        client_id: client.id.clone(),
        redirect_uri: redirect_uri.clone(),
        scope: scope.to_string(),
        state: params.state.clone(),
        nonce: params.nonce.clone(),
        code_challenge: challenge.to_owned(),
        resource: params.resource.clone(),
        prompt: params.prompt.clone(),
        expires_at: now() + AUTH_REQUEST_TTL,
    };
    if let Err(e) = server.store.insert_auth_request(&request).await {
        tracing::error!(error = %e, "cannot store authorization request");
        return server.redirect_error(&to, ErrorCode::ServerError, "internal error");
    }

    let session = server
        .session_user(headers)
        .await
        .filter(|(_, auth_time)| !prompts.contains(&"login") && max_age.is_none_or(|age| now() - auth_time <= age));
    match session {
        Some((user, auth_time)) => proceed(server, headers, &client, &request, &user, auth_time).await,
        None if prompts.contains(&"none") => {
            server.redirect_error(&to, ErrorCode::LoginRequired, "the user is not signed in")
        }
        None => login_page(server, headers, &client, &request.id, "", None, StatusCode::OK),
    }
}

fn login_page(
    server: &AuthServer,
    headers: &HeaderMap,
    client: &Client,
    request_id: &str,
    email: &str,
    message: Option<&str>,
    status: StatusCode,
) -> Response {
    server.form_page(headers, request_id, |csrf| {
        pages::login(&FormContext { request_id, csrf, client_name: &client.name }, email, message, status)
    })
}

/// The sign-in page again, saying the attempts are exhausted for now.
fn too_many(server: &AuthServer, headers: &HeaderMap, client: &Client, request_id: &str, email: &str) -> Response {
    login_page(server, headers, client, request_id, email, Some(TOO_MANY), StatusCode::TOO_MANY_REQUESTS)
}

/// After sign-in: ask for consent when needed, else redirect with a code.
async fn proceed(
    server: &AuthServer,
    headers: &HeaderMap,
    client: &Client,
    request: &AuthRequest,
    user: &User,
    auth_time: i64,
) -> Response {
    let scope = Scopes::from_stored(&request.scope);
    let prompts = |p: &str| request.prompt.as_deref().is_some_and(|all| all.split(' ').any(|x| x == p));
    // Third-party clients (self-registered or metadata documents) need the user's consent for what
    // they ask, remembered per client; first-party ones only when the request says prompt=consent.
    let needs_consent = prompts("consent")
        || !client.is_first_party() && {
            match server.store.consented_scope(&user.id, &client.id).await {
                Ok(Some(granted)) => Scopes::from_stored(&granted).narrow(&scope).is_err(),
                Ok(None) => true,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read consent");
                    true
                }
            }
        };
    if needs_consent {
        if prompts("none") {
            let to = ErrorRedirect { redirect_uri: &request.redirect_uri, state: request.state.as_deref() };
            return server.redirect_error(&to, ErrorCode::ConsentRequired, "the user has not consented");
        }
        let scopes: Vec<&str> = scope.iter().collect();
        // Names are chosen by whoever registered the client; the redirect host is what it really is.
        let host =
            Url::parse(&request.redirect_uri).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
        return server.form_page(headers, &request.id, |csrf| {
            pages::consent(&FormContext { request_id: &request.id, csrf, client_name: &client.name }, &host, &scopes)
        });
    }
    issue_code(server, request, user, auth_time).await
}

async fn issue_code(server: &AuthServer, request: &AuthRequest, user: &User, auth_time: i64) -> Response {
    let to = ErrorRedirect { redirect_uri: &request.redirect_uri, state: request.state.as_deref() };
    match server.store.take_auth_request(&request.id).await {
        Ok(true) => {}
        Ok(false) => return pages::error(StatusCode::BAD_REQUEST, "This sign-in request was already completed."),
        Err(e) => {
            tracing::error!(error = %e, "cannot consume authorization request");
            return server.redirect_error(&to, ErrorCode::ServerError, "internal error");
        }
    }
    let now = now();
    let code = random_token("");
    let grant = agora_store::Grant {
        id: uuid::Uuid::new_v4().to_string(),
        client_id: request.client_id.clone(),
        user_id: user.id.clone(),
        scope: request.scope.clone(),
        resource: request.resource.clone(),
        auth_time,
        revoked: false,
    };
    let stored = agora_store::StoredCode {
        redirect_uri: request.redirect_uri.clone(),
        nonce: request.nonce.clone(),
        code_challenge: request.code_challenge.clone(),
        expires_at: now + server.config.code_ttl,
    };
    if let Err(e) = server.store.create_grant_with_code(&grant, &token_digest(&code), &stored, now).await {
        tracing::error!(error = %e, "cannot store authorization code");
        return server.redirect_error(&to, ErrorCode::ServerError, "internal error");
    }
    let mut params = vec![("code", code.as_str())];
    if let Some(state) = request.state.as_deref() {
        params.push(("state", state));
    }
    server.redirect_with(&request.redirect_uri, &params)
}

/// Loads the pending request and its client, and checks the form's CSRF token.
async fn pending(
    server: &AuthServer,
    headers: &HeaderMap,
    request_id: &str,
    csrf: &str,
) -> Result<(AuthRequest, Client), Response> {
    let expired = || {
        pages::error(
            StatusCode::BAD_REQUEST,
            "This sign-in request has expired. Go back to the application and start again.",
        )
    };
    let request = match server.store.auth_request(request_id, now()).await {
        Ok(Some(request)) => request,
        Ok(None) => return Err(expired()),
        Err(e) => {
            tracing::error!(error = %e, "cannot load authorization request");
            return Err(pages::error(StatusCode::INTERNAL_SERVER_ERROR, "Internal error."));
        }
    };
    if !server.csrf_valid(headers, request_id, csrf) {
        return Err(pages::error(
            StatusCode::FORBIDDEN,
            "The form expired or was not sent by this browser. Go back and try again.",
        ));
    }
    match server.client(&request.client_id).await {
        Ok(Some(client)) => Ok((request, client)),
        _ => Err(expired()),
    }
}

/// Starts a browser session for `user` and continues the authorization.
async fn signed_in(
    server: &AuthServer,
    headers: &HeaderMap,
    client: &Client,
    request: &AuthRequest,
    user: &User,
) -> Response {
    let now = now();
    let session_id = random_token("");
    if let Err(e) = server
        .store
        .create_browser_session(&token_digest(&session_id), &user.id, now, now + server.config.session_ttl)
        .await
    {
        tracing::error!(error = %e, "cannot create session");
        return pages::error(StatusCode::INTERNAL_SERVER_ERROR, "Internal error.");
    }
    tracing::info!(user = %user.id, client = %client.id, "user signed in");
    let mut response = proceed(server, headers, client, request, user, now).await;
    let cookie = set_cookie(SESSION_COOKIE, &session_id, server.config.session_ttl, server.config.secure_cookies());
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// Fields every sign-in form posts: which pending request it continues, and its CSRF token.
#[derive(Deserialize)]
pub struct PendingFields {
    request: String,
    csrf: String,
}

/// A form that continues a pending authorization request.
trait PendingForm {
    fn pending(&self) -> &PendingFields;
}

macro_rules! pending_form {
    ($($form:ty),*) => {
        $(impl PendingForm for $form {
            fn pending(&self) -> &PendingFields {
                &self.pending
            }
        })*
    };
}
pending_form!(PasswordForm, CodeRequestForm, CodeVerifyForm, ConsentForm);

/// The posted form, with its pending request and client; or the page to answer with instead (a
/// malformed form, an expired request, a CSRF failure).
async fn open_form<T: PendingForm>(
    server: &AuthServer,
    headers: &HeaderMap,
    form: Result<OAuthForm<T>, crate::error::OAuthError>,
) -> Result<(T, AuthRequest, Client), Response> {
    let OAuthForm(form) = form.map_err(|e| pages::error(e.status, &e.description))?;
    let (request, client) = pending(server, headers, &form.pending().request, &form.pending().csrf).await?;
    Ok((form, request, client))
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(flatten)]
    pending: PendingFields,
    email: String,
    password: String,
}

const BAD_CREDENTIALS: &str = "Wrong email or password.";
const TOO_MANY: &str = "Too many attempts. Wait a few minutes and try again.";

pub async fn password_login(
    State(server): Server,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    form: Result<OAuthForm<PasswordForm>, crate::error::OAuthError>,
) -> Response {
    let (form, request, client) = match open_form(&server, &headers, form).await {
        Ok(opened) => opened,
        Err(page) => return page,
    };
    let email = agora_core::email::normalize(&form.email).unwrap_or_default();
    // Lockout is per (account, address) first, so a stranger's guesses cannot lock the owner out
    // from elsewhere; a much higher per-account limit still stops guesses from many addresses.
    let (ip_bucket, pair_bucket, account_bucket) =
        (format!("login-ip:{ip}"), format!("login-account-ip:{email}:{ip}"), format!("login-account:{email}"));
    let limits = [
        (ip_bucket.as_str(), MAX_ATTEMPTS_PER_IP),
        (pair_bucket.as_str(), MAX_FAILURES_PER_ACCOUNT_AND_IP),
        (account_bucket.as_str(), MAX_FAILURES_PER_ACCOUNT),
    ];
    if server.rate_limited_any(&limits).await {
        return too_many(&server, &headers, &client, &request.id, &form.email);
    }
    let found = match email.is_empty() {
        true => None,
        false => server.store.user_with_password(&email).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot load user");
            None
        }),
    };
    let password = form.password.clone();
    let user = tokio::task::spawn_blocking(move || match found {
        Some((user, Some(hash))) if !user.disabled => password::verify(&password, &hash).then_some(user),
        _ => {
            password::verify_against_nothing(&password);
            None
        }
    })
    .await
    .ok()
    .flatten();
    match user {
        Some(user) => signed_in(&server, &headers, &client, &request, &user).await,
        None => {
            // Only failures count, so people behind one shared address can still sign in.
            server.rate_hit(&ip_bucket).await;
            server.rate_hit(&pair_bucket).await;
            server.rate_hit(&account_bucket).await;
            tracing::info!(%ip, "failed password sign-in");
            login_page(
                &server,
                &headers,
                &client,
                &request.id,
                &form.email,
                Some(BAD_CREDENTIALS),
                StatusCode::UNAUTHORIZED,
            )
        }
    }
}

#[derive(Deserialize)]
pub struct CodeRequestForm {
    #[serde(flatten)]
    pending: PendingFields,
    email: String,
}

pub async fn send_login_code(
    State(server): Server,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    form: Result<OAuthForm<CodeRequestForm>, crate::error::OAuthError>,
) -> Response {
    let (form, request, client) = match open_form(&server, &headers, form).await {
        Ok(opened) => opened,
        Err(page) => return page,
    };
    let Ok(email) = agora_core::email::normalize(&form.email) else {
        return login_page(
            &server,
            &headers,
            &client,
            &request.id,
            &form.email,
            Some("Enter a valid email address."),
            StatusCode::BAD_REQUEST,
        );
    };
    let (ip_bucket, account_bucket) = (format!("code-ip:{ip}"), format!("code-account:{email}"));
    if server.rate_limited_any(&[(&ip_bucket, MAX_ATTEMPTS_PER_IP), (&account_bucket, MAX_CODES_PER_ACCOUNT)]).await {
        return too_many(&server, &headers, &client, &request.id, &form.email);
    }
    server.rate_hit(&ip_bucket).await;
    server.rate_hit(&account_bucket).await;
    // The same page and a stored code whether or not the address has an account: no enumeration.
    let code_id = uuid::Uuid::new_v4().to_string();
    let code = six_digit_code();
    if let Err(e) = server
        .store
        .insert_login_code(&code_id, &email, &server.login_code_digest(&code_id, &code), now() + LOGIN_CODE_TTL)
        .await
    {
        tracing::error!(error = %e, "cannot store login code");
        return pages::error(StatusCode::INTERNAL_SERVER_ERROR, "Internal error.");
    }
    match server.store.user_by_email(&email).await {
        Ok(Some(user)) if !user.disabled => server.mailer.send_login_code(&email, &code),
        Ok(_) => tracing::info!("sign-in code requested for an address without an account"),
        Err(e) => tracing::error!(error = %e, "cannot load user"),
    }
    server.form_page(&headers, &request.id, |csrf| {
        pages::enter_code(
            &FormContext { request_id: &request.id, csrf, client_name: &client.name },
            &code_id,
            None,
            StatusCode::OK,
        )
    })
}

fn six_digit_code() -> String {
    let bytes = agora_store::secret::random_bytes::<8>();
    format!("{:06}", u64::from_le_bytes(bytes) % 1_000_000)
}

#[derive(Deserialize)]
pub struct CodeVerifyForm {
    #[serde(flatten)]
    pending: PendingFields,
    code_id: String,
    code: String,
}

pub async fn verify_login_code(
    State(server): Server,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    form: Result<OAuthForm<CodeVerifyForm>, crate::error::OAuthError>,
) -> Response {
    let (form, request, client) = match open_form(&server, &headers, form).await {
        Ok(opened) => opened,
        Err(page) => return page,
    };
    let ip_bucket = format!("code-verify-ip:{ip}");
    let retry = |message, status| {
        server.form_page(&headers, &request.id, |csrf| {
            pages::enter_code(
                &FormContext { request_id: &request.id, csrf, client_name: &client.name },
                &form.code_id,
                Some(message),
                status,
            )
        })
    };
    if server.rate_limited(&ip_bucket, MAX_ATTEMPTS_PER_IP).await {
        return retry(TOO_MANY, StatusCode::TOO_MANY_REQUESTS);
    }
    server.rate_hit(&ip_bucket).await;
    let email = server
        .store
        .verify_login_code(&form.code_id, &server.login_code_digest(&form.code_id, form.code.trim()), now())
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot verify login code");
            None
        });
    let user = match email {
        Some(email) => server.store.user_by_email(&email).await.ok().flatten().filter(|u| !u.disabled),
        None => None,
    };
    match user {
        Some(mut user) => {
            if !user.email_verified {
                // Receiving the code proves the address.
                if let Err(e) = server.store.mark_email_verified(&user.id, now()).await {
                    tracing::error!(error = %e, "cannot mark email verified");
                } else {
                    user.email_verified = true;
                }
            }
            signed_in(&server, &headers, &client, &request, &user).await
        }
        None => retry("That code is wrong or has expired.", StatusCode::UNAUTHORIZED),
    }
}

#[derive(Deserialize)]
pub struct ConsentForm {
    #[serde(flatten)]
    pending: PendingFields,
    decision: String,
}

pub async fn consent(
    State(server): Server,
    headers: HeaderMap,
    form: Result<OAuthForm<ConsentForm>, crate::error::OAuthError>,
) -> Response {
    let (form, request, client) = match open_form(&server, &headers, form).await {
        Ok(opened) => opened,
        Err(page) => return page,
    };
    let Some((user, auth_time)) = server.session_user(&headers).await else {
        return login_page(&server, &headers, &client, &request.id, "", None, StatusCode::OK);
    };
    if form.decision != "allow" {
        let _ = server.store.take_auth_request(&request.id).await;
        let to = ErrorRedirect { redirect_uri: &request.redirect_uri, state: request.state.as_deref() };
        return server.redirect_error(&to, ErrorCode::AccessDenied, "the user denied access");
    }
    if let Err(e) = server.store.record_consent(&user.id, &client.id, &request.scope, now()).await {
        tracing::error!(error = %e, "cannot record consent");
        return pages::error(StatusCode::INTERNAL_SERVER_ERROR, "Internal error.");
    }
    issue_code(&server, &request, &user, auth_time).await
}
