//! `/api/v1`: the management service over JSON, for the console and for scripts. Every request
//! carries an agora access token of a user; what they may do is their role in the account named.
//! Errors are `{"error": code, "message": text}` with 400, 401, 403, 404 or 409; 500 only for
//! agora's own failures (logged, reported without detail).

use std::sync::Arc;

use agora_core::account::{Account, Invitation, Membership, Role};
use agora_core::profile::Profile;
use agora_core::toolkit::ToolSelection;
use agora_oauth::AuthServer;
use agora_store::{AuditEntry, PersonalToken, Toolkit};
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::service::{Actor, InvitationRequest, Service, ServiceError};

pub const API_PREFIX: &str = "/api/v1";

struct Api {
    service: Service,
    auth: Arc<AuthServer>,
}

/// The routes, as `(method, path, summary)`; the OpenAPI document is made from the same table.
const OPERATIONS: &[(&str, &str, &str)] = &[
    ("get", "/accounts", "Accounts you belong to, with your role"),
    ("post", "/accounts", "Create an organization; you become its OWNER"),
    ("get", "/accounts/{account}", "One account and its linked clients"),
    ("patch", "/accounts/{account}", "Change public access (OWNER or ADMIN)"),
    ("post", "/accounts/{account}/clients", "Link an existing OAuth client by id and secret (OWNER or ADMIN)"),
    ("post", "/accounts/{account}/connections", "Create a new auth connection: a linked client, shown once"),
    ("delete", "/accounts/{account}/clients/{client}", "Unlink a client (OWNER or ADMIN)"),
    ("get", "/accounts/{account}/members", "Members and their roles"),
    ("post", "/accounts/{account}/members", "Add an existing user as a member (OWNER or ADMIN)"),
    ("patch", "/accounts/{account}/members/{user}", "Change a member's role (OWNER or ADMIN)"),
    ("delete", "/accounts/{account}/members/{user}", "Remove a member; the last OWNER stays"),
    ("get", "/accounts/{account}/invitations", "Pending invitations (OWNER or ADMIN)"),
    ("post", "/accounts/{account}/invitations", "Invite an email through one of the account's clients"),
    ("delete", "/accounts/{account}/invitations/{invitation}", "Revoke an invitation"),
    ("get", "/accounts/{account}/profiles", "Profiles"),
    ("post", "/accounts/{account}/profiles", "Create a profile (OWNER or ADMIN)"),
    ("post", "/accounts/{account}/profiles/{profile}/toolkits", "Put a toolkit in a profile"),
    ("get", "/accounts/{account}/toolkits", "Toolkits"),
    ("post", "/accounts/{account}/toolkits", "Create a toolkit (OWNER or ADMIN)"),
    ("put", "/accounts/{account}/toolkits/{toolkit}/tools", "Select a tool with overrides"),
    ("get", "/accounts/{account}/audit", "Audit entries in [from, until) (OWNER or ADMIN)"),
    ("get", "/accounts/{account}/services", "Third-party services (no secrets)"),
    ("post", "/accounts/{account}/services", "Add a third-party service (OWNER or ADMIN)"),
    ("get", "/accounts/{account}/credentials", "Credentials: metadata only, never secrets"),
    ("post", "/accounts/{account}/credentials", "Add the organization's API key for a service (OWNER or ADMIN)"),
    ("delete", "/accounts/{account}/credentials/{credential}", "Disconnect: revoke at the provider and remove"),
    ("put", "/accounts/{account}/credentials/{credential}/profiles/{profile}", "Assign a credential to a profile"),
    ("delete", "/accounts/{account}/credentials/{credential}/profiles/{profile}", "Unassign a credential"),
    ("get", "/personal-tokens", "Your personal access tokens"),
    ("post", "/personal-tokens", "Create a personal access token (shown once)"),
    ("delete", "/personal-tokens/{token}", "Revoke one of your personal access tokens"),
];

pub fn router(auth: Arc<AuthServer>) -> Router {
    let api = Arc::new(Api { service: Service::new(auth.store.clone()), auth });
    let routes = Router::new()
        .route("/accounts", get(list_accounts).post(create_account))
        .route("/accounts/{account}", get(get_account).patch(update_account))
        .route("/accounts/{account}/clients", post(link_client))
        .route("/accounts/{account}/clients/{client}", delete(unlink_client))
        .route("/accounts/{account}/connections", post(create_connection))
        .route("/accounts/{account}/members", get(list_members).post(add_member))
        .route("/accounts/{account}/members/{user}", axum::routing::patch(change_member).delete(remove_member))
        .route("/accounts/{account}/invitations", get(list_invitations).post(invite))
        .route("/accounts/{account}/invitations/{invitation}", delete(revoke_invitation))
        .route("/accounts/{account}/profiles", get(list_profiles).post(create_profile))
        .route("/accounts/{account}/profiles/{profile}/toolkits", post(attach_toolkit))
        .route("/accounts/{account}/toolkits", get(list_toolkits).post(create_toolkit))
        .route("/accounts/{account}/toolkits/{toolkit}/tools", put(put_tool))
        .route("/accounts/{account}/audit", get(audit))
        .route("/accounts/{account}/services", get(list_services).post(create_service))
        .route("/accounts/{account}/credentials", get(list_credentials).post(add_shared_key))
        .route("/accounts/{account}/credentials/{credential}", delete(disconnect))
        .route("/accounts/{account}/credentials/{credential}/profiles/{profile}", put(assign).delete(unassign))
        .route("/personal-tokens", get(list_personal_tokens).post(create_personal_token))
        .route("/personal-tokens/{token}", delete(revoke_personal_token))
        .route("/openapi.json", get(openapi))
        .fallback(|| async { ApiError::NotFound("route").into_response() })
        .with_state(api);
    Router::new().nest(API_PREFIX, routes)
}

#[derive(Debug)]
enum ApiError {
    Unauthorized(String),
    NotFound(&'static str),
    BadRequest(String),
    Service(ServiceError),
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        ApiError::Service(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ApiError::Unauthorized(message) => (StatusCode::UNAUTHORIZED, "unauthorized", message),
            ApiError::NotFound(what) => (StatusCode::NOT_FOUND, "not_found", format!("{what} not found")),
            ApiError::BadRequest(message) => (StatusCode::BAD_REQUEST, "invalid_request", message),
            ApiError::Service(e) => match e {
                ServiceError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", e.to_string()),
                ServiceError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", e.to_string()),
                ServiceError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request", e.to_string()),
                ServiceError::Conflict(_) => (StatusCode::CONFLICT, "conflict", e.to_string()),
                ServiceError::Store(e) => {
                    tracing::error!(error = %e, "management API request failed");
                    (StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal error".to_owned())
                }
            },
        };
        let mut response = (status, Json(json!({"error": code, "message": message}))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The signed-in user a request acts as.
struct User(Actor);

impl FromRequestParts<Arc<Api>> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api>) -> ApiResult<Self> {
        let token = agora_oauth::extract::bearer(&parts.headers)
            .ok_or_else(|| ApiError::Unauthorized("a bearer token is required".into()))?;
        let claims = api.auth.verify_access_token_cached(token).await.map_err(ApiError::Unauthorized)?;
        // A client's own token (client credentials) acts for no user.
        match api.auth.store.active_user(&claims.sub).await {
            Ok(Some(_)) => Ok(User(Actor::User(claims.sub))),
            Ok(None) => Err(ApiError::Unauthorized("the management API needs a user's token".into())),
            Err(e) => Err(ApiError::Service(e.into())),
        }
    }
}

/// A JSON body whose rejection is a JSON 400, like every other client mistake here.
struct Body<T>(T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> ApiResult<Self> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(ApiError::BadRequest(match rejection {
                JsonRejection::JsonDataError(e) => e.body_text(),
                other => other.body_text(),
            })),
        }
    }
}

fn now() -> i64 {
    agora_oauth::now()
}

fn account_json(account: &Account, role: Option<Role>) -> Value {
    json!({
        "id": account.id, "name": account.name, "public_access": account.public_access,
        "default_profile": account.default_profile, "role": role.map(Role::as_str),
    })
}

fn member_json(m: &Membership) -> Value {
    json!({"user_id": m.user_id, "role": m.role.as_str(), "default_profile": m.default_profile})
}

fn invitation_json(i: &Invitation) -> Value {
    json!({"id": i.id, "email": i.email, "role": i.role.as_str(), "client_id": i.client_id, "expires_at": i.expires_at})
}

fn profile_json(p: &Profile) -> Value {
    json!({"id": p.id, "name": p.name, "alias": p.alias})
}

fn toolkit_json(t: &Toolkit) -> Value {
    json!({"id": t.id, "name": t.name})
}

fn token_json(t: &PersonalToken) -> Value {
    json!({"id": t.id, "name": t.name, "profile_id": t.profile_id, "expires_at": t.expires_at, "revoked": t.revoked,
           "created_at": t.created_at})
}

fn audit_json(e: &AuditEntry) -> Value {
    json!({"id": e.id, "at": e.at, "actor": e.actor, "action": e.action, "detail": e.detail})
}

fn parse_role(raw: &str) -> ApiResult<Role> {
    Role::parse(raw).ok_or_else(|| ApiError::BadRequest("role must be OWNER, ADMIN, MEMBER or END_USER".into()))
}

async fn list_accounts(State(api): State<Arc<Api>>, User(actor): User) -> ApiResult<Json<Value>> {
    let accounts = api.service.my_accounts(&actor).await?;
    Ok(Json(json!({"accounts": accounts.iter().map(|(a, r)| account_json(a, Some(*r))).collect::<Vec<_>>()})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAccountBody {
    name: String,
    #[serde(default)]
    public_access: bool,
}

async fn create_account(
    State(api): State<Arc<Api>>,
    User(actor): User,
    Body(body): Body<NewAccountBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let account = api.service.create_account(&actor, &body.name, body.public_access, now()).await?;
    Ok((StatusCode::CREATED, Json(account_json(&account, Some(Role::Owner)))))
}

async fn get_account(
    State(api): State<Arc<Api>>,
    User(actor): User,
    Path(account): Path<String>,
) -> ApiResult<Json<Value>> {
    let (account, clients) = api.service.account_details(&actor, &account).await?;
    let mut body = account_json(&account, None);
    body["clients"] = json!(clients);
    Ok(Json(body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountChange {
    public_access: bool,
}

async fn update_account(
    State(api): State<Arc<Api>>,
    User(actor): User,
    Path(account): Path<String>,
    Body(body): Body<AccountChange>,
) -> ApiResult<StatusCode> {
    api.service.set_public_access(&actor, &account, body.public_access, now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkBody {
    client_id: String,
    client_secret: Option<String>,
}

async fn link_client(
    State(api): State<Arc<Api>>,
    User(actor): User,
    Path(account): Path<String>,
    Body(body): Body<LinkBody>,
) -> ApiResult<StatusCode> {
    api.service.link_client(&actor, &account, &body.client_id, body.client_secret.as_deref(), now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectionBody {
    name: String,
    #[serde(default)]
    redirect_uris: Vec<String>,
}

async fn create_connection(
    State(api): State<Arc<Api>>,
    User(actor): User,
    Path(account): Path<String>,
    Body(body): Body<ConnectionBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (id, secret) = api.service.create_connection(&actor, &account, &body.name, body.redirect_uris, now()).await?;
    Ok((StatusCode::CREATED, Json(json!({"CIVIC_CLIENT_ID": id, "CIVIC_CLIENT_SECRET": secret}))))
}

async fn unlink_client(
    State(api): State<Arc<Api>>,
    User(actor): User,
    Path((account, client)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    api.service.unlink_client(&actor, &account, &client, now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_members(
    State(api): State<Arc<Api>>,
    User(actor): User,
    Path(account): Path<String>,
) -> ApiResult<Json<Value>> {
    let members = api.service.members(&actor, &account).await?;
    Ok(Json(json!({"members": members.iter().map(member_json).collect::<Vec<_>>()})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberBody {
    email: String,
    role: String,
}

async fn add_member(
    State(api): State<Arc<Api>>,
    User(actor): User,
    Path(account): Path<String>,
    Body(body): Body<MemberBody>,
) -> ApiResult<StatusCode> {
    api.service.add_member(&actor, &account, &body.email, parse_role(&body.role)?, now()).await?;
    Ok(StatusCode::CREATED)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleBody {
    role: String,
}

async fn change_member(
    State(api): State<Arc<Api>>,
    User(actor): User,
    Path((account, user)): Path<(String, String)>,
    Body(body): Body<RoleBody>,
) -> ApiResult<StatusCode> {
    api.service.change_member(&actor, &account, &user, Some(parse_role(&body.role)?), now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_member(
    State(api): State<Arc<Api>>,
    User(actor): User,
    Path((account, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    api.service.change_member(&actor, &account, &user, None, now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_invitations(
    State(api): State<Arc<Api>>,
    User(actor): User,
    Path(account): Path<String>,
) -> ApiResult<Json<Value>> {
    let invitations = api.service.invitations(&actor, &account, now()).await?;
    Ok(Json(json!({"invitations": invitations.iter().map(invitation_json).collect::<Vec<_>>()})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InviteBody {
    email: String,
    role: String,
    client_id: String,
    #[serde(default = "seven")]
    days: i64,
}

fn seven() -> i64 {
    7
}

async fn invite(
    State(api): State<Arc<Api>>,
    User(actor): User,
    Path(account): Path<String>,
    Body(body): Body<InviteBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let asked = InvitationRequest {
        email: &body.email,
        role: parse_role(&body.role)?,
        client_id: &body.client_id,
        days: body.days,
    };
    let invitation = api.service.invite(&actor, &account, asked, now()).await?;
    Ok((StatusCode::CREATED, Json(invitation_json(&invitation))))
}

async fn revoke_invitation(
    State(api): State<Arc<Api>>,
    User(actor): User,
    Path((account, invitation)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    api.service.revoke_invitation(&actor, &account, &invitation, now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_profiles(
    State(api): State<Arc<Api>>,
    User(actor): User,
    Path(account): Path<String>,
) -> ApiResult<Json<Value>> {
    let profiles = api.service.profiles(&actor, &account).await?;
    Ok(Json(json!({"profiles": profiles.iter().map(profile_json).collect::<Vec<_>>()})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileBody {
    name: String,
    alias: Option<String>,
    #[serde(default)]
    default: bool,
}

async fn create_profile(
    State(api): State<Arc<Api>>,
    User(actor): User,
    Path(account): Path<String>,
    Body(body): Body<ProfileBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let profile =
        api.service.create_profile(&actor, &account, &body.name, body.alias.as_deref(), body.default, now()).await?;
    Ok((StatusCode::CREATED, Json(profile_json(&profile))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachBody {
    toolkit: String,
}

async fn attach_toolkit(
    State(api): State<Arc<Api>>,
    User(actor): User,
    Path((account, profile)): Path<(String, String)>,
    Body(body): Body<AttachBody>,
) -> ApiResult<StatusCode> {
    api.service.attach_toolkit(&actor, &account, &profile, &body.toolkit, now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_toolkits(
    State(api): State<Arc<Api>>,
    User(actor): User,
    Path(account): Path<String>,
) -> ApiResult<Json<Value>> {
    let toolkits = api.service.toolkits(&actor, &account).await?;
    Ok(Json(json!({"toolkits": toolkits.iter().map(toolkit_json).collect::<Vec<_>>()})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolkitBody {
    name: String,
}

async fn create_toolkit(
    State(api): State<Arc<Api>>,
    User(actor): User,
    Path(account): Path<String>,
    Body(body): Body<ToolkitBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let toolkit = api.service.create_toolkit(&actor, &account, &body.name, now()).await?;
    Ok((StatusCode::CREATED, Json(toolkit_json(&toolkit))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolBody {
    server: String,
    tool: String,
    alias: Option<String>,
    description: Option<String>,
    #[serde(default)]
    fixed_arguments: serde_json::Map<String, Value>,
    #[serde(default)]
    hidden: bool,
}

async fn put_tool(
    State(api): State<Arc<Api>>,
    User(actor): User,
    Path((account, toolkit)): Path<(String, String)>,
    Body(body): Body<ToolBody>,
) -> ApiResult<StatusCode> {
    let selection = ToolSelection {
        server: body.server,
        tool: body.tool,
        alias: body.alias,
        description: body.description,
        fixed_arguments: body.fixed_arguments,
        hidden: body.hidden,
    };
    api.service.put_toolkit_tool(&actor, &account, &toolkit, selection, now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct Window {
    from: Option<i64>,
    until: Option<i64>,
}

async fn audit(
    State(api): State<Arc<Api>>,
    User(actor): User,
    Path(account): Path<String>,
    window: Result<Query<Window>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(window) = window.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let until = window.until.unwrap_or(now() + 1);
    let from = window.from.unwrap_or(until - 86_400);
    let entries = api.service.audit_log(&actor, &account, from, until).await?;
    Ok(Json(json!({"entries": entries.iter().map(audit_json).collect::<Vec<_>>()})))
}

fn user_id(actor: &Actor) -> &str {
    match actor {
        Actor::User(id) => id,
        Actor::Operator => "",
    }
}

async fn list_personal_tokens(State(api): State<Arc<Api>>, User(actor): User) -> ApiResult<Json<Value>> {
    let tokens = api.service.personal_tokens(&actor, user_id(&actor)).await?;
    Ok(Json(json!({"tokens": tokens.iter().map(token_json).collect::<Vec<_>>()})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PersonalTokenBody {
    profile_id: String,
    name: String,
    #[serde(default = "thirty")]
    days: i64,
}

fn thirty() -> i64 {
    30
}

async fn create_personal_token(
    State(api): State<Arc<Api>>,
    User(actor): User,
    Body(body): Body<PersonalTokenBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (token, secret) = api
        .service
        .create_personal_token(&actor, user_id(&actor), &body.profile_id, &body.name, body.days, now())
        .await?;
    let mut shown = token_json(&token);
    shown["token"] = json!(secret);
    Ok((StatusCode::CREATED, Json(shown)))
}

async fn revoke_personal_token(
    State(api): State<Arc<Api>>,
    User(actor): User,
    Path(token): Path<String>,
) -> ApiResult<StatusCode> {
    api.service.revoke_personal_token(&actor, user_id(&actor), &token, now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn service_json(s: &agora_store::Service) -> Value {
    let (kind, oauth) = match &s.kind {
        agora_store::ServiceKind::OAuth2 { authorize_url, token_url, client_id, scopes, revocation_url, .. } => (
            "oauth2",
            json!({
                "authorize_url": authorize_url, "token_url": token_url, "client_id": client_id, "scopes": scopes,
                "revocation_url": revocation_url,
            }),
        ),
        agora_store::ServiceKind::ApiKey => ("api_key", Value::Null),
        agora_store::ServiceKind::Basic => ("basic", Value::Null),
    };
    json!({"id": s.id, "name": s.name, "kind": kind, "oauth2": oauth,
           "header_name": s.header_name, "header_template": s.header_template, "env_name": s.env_name})
}

async fn list_services(
    State(api): State<Arc<Api>>,
    User(actor): User,
    Path(account): Path<String>,
) -> ApiResult<Json<Value>> {
    let services = api.service.services(&actor, &account).await?;
    Ok(Json(json!({"services": services.iter().map(service_json).collect::<Vec<_>>()})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceBody {
    name: String,
    /// `oauth2`, `api_key` or `basic`.
    kind: String,
    authorize_url: Option<String>,
    token_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    #[serde(default)]
    scopes: String,
    revocation_url: Option<String>,
    header_name: Option<String>,
    header_template: Option<String>,
    env_name: Option<String>,
}

async fn create_service(
    State(api): State<Arc<Api>>,
    User(actor): User,
    Path(account): Path<String>,
    Body(body): Body<ServiceBody>,
) -> ApiResult<StatusCode> {
    let kind = match (body.kind.as_str(), body.authorize_url, body.token_url, body.client_id) {
        ("api_key", None, None, None) => agora_store::ServiceKind::ApiKey,
        ("basic", None, None, None) => agora_store::ServiceKind::Basic,
        ("oauth2", Some(authorize_url), Some(token_url), Some(client_id)) => agora_store::ServiceKind::OAuth2 {
            authorize_url,
            token_url,
            client_id,
            client_secret: body.client_secret,
            scopes: body.scopes,
            revocation_url: body.revocation_url,
        },
        _ => {
            return Err(ApiError::BadRequest(
                "kind is api_key, basic, or oauth2 with authorize_url, token_url and client_id".into(),
            ));
        }
    };
    let service = agora_store::Service {
        id: String::new(),
        account_id: String::new(),
        name: body.name,
        kind,
        header_name: body.header_name.unwrap_or_else(|| "Authorization".into()),
        header_template: body.header_template.unwrap_or_else(|| "Bearer {token}".into()),
        env_name: body.env_name,
    };
    api.service.create_service(&actor, &account, service, now()).await?;
    Ok(StatusCode::CREATED)
}

async fn list_credentials(
    State(api): State<Arc<Api>>,
    User(actor): User,
    Path(account): Path<String>,
) -> ApiResult<Json<Value>> {
    let credentials = api.service.credentials(&actor, &account).await?;
    let shown: Vec<Value> = credentials
        .iter()
        .map(|c| {
            json!({"id": c.id, "service": c.service, "owner": c.owner, "profiles": c.profiles,
                   "expires_at": c.expires_at, "updated_at": c.updated_at})
        })
        .collect();
    Ok(Json(json!({"credentials": shown})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SharedKeyBody {
    service: String,
    api_key: String,
}

async fn add_shared_key(
    State(api): State<Arc<Api>>,
    User(actor): User,
    Path(account): Path<String>,
    Body(body): Body<SharedKeyBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let id = api.service.add_shared_api_key(&actor, &account, &body.service, &body.api_key, now()).await?;
    Ok((StatusCode::CREATED, Json(json!({"id": id}))))
}

async fn disconnect(
    State(api): State<Arc<Api>>,
    User(actor): User,
    Path((account, credential)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    api.service.disconnect(&actor, &account, &credential, now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn assign(
    State(api): State<Arc<Api>>,
    User(actor): User,
    Path((account, credential, profile)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    api.service.assign_credential(&actor, &account, &credential, &profile, true, now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn unassign(
    State(api): State<Arc<Api>>,
    User(actor): User,
    Path((account, credential, profile)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    api.service.assign_credential(&actor, &account, &credential, &profile, false, now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The OpenAPI 3.1 description of this API, made from the route table.
fn openapi_document(base: &str) -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, summary) in OPERATIONS {
        let parameters: Vec<Value> = path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let operation = json!({
            "summary": summary,
            "parameters": parameters,
            "security": [{"bearer": []}],
            "responses": {
                "2XX": {"description": "done"},
                "400": {"$ref": "#/components/responses/Error"},
                "401": {"$ref": "#/components/responses/Error"},
                "403": {"$ref": "#/components/responses/Error"},
                "404": {"$ref": "#/components/responses/Error"},
                "409": {"$ref": "#/components/responses/Error"},
            },
        });
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "agora management API", "version": env!("CARGO_PKG_VERSION")},
        "servers": [{"url": format!("{}{API_PREFIX}", base.trim_end_matches('/'))}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "an agora access token of a user"}},
            "responses": {"Error": {"description": "error", "content": {"application/json": {"schema": {
                "type": "object", "required": ["error", "message"],
                "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
            }}}}},
        },
    })
}

async fn openapi(State(api): State<Arc<Api>>) -> Json<Value> {
    Json(openapi_document(api.auth.config.base()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_every_operation_once() {
        let document = openapi_document("http://127.0.0.1:8080/");
        assert_eq!(document["servers"][0]["url"], "http://127.0.0.1:8080/api/v1");
        let listed: usize = document["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(listed, OPERATIONS.len());
        assert_eq!(
            document["paths"]["/accounts/{account}/members/{user}"]["delete"]["parameters"].as_array().unwrap().len(),
            2
        );
    }
}
