//! token-exchange: grants per second at `POST /oauth/token`, each against the bound its crypto sets,
//! measured in this process in the same run on every core with the JOSE crate and backend agora
//! uses (jsonwebtoken on aws-lc-rs, with agora's provider that keeps parsed RSA keys), with keys of
//! the same kind (RSA-2048, RS256).
//!
//! - RFC 8693 exchange of an ID token from a federated provider (the bench is the provider: its
//!   own key, configured as a static public key) for an agora access token. Bound: one RS256
//!   verification (the subject token) and one RS256 signature (the access token).
//! - The refresh-token grant, on chains started with the authorization-code flow and PKCE under
//!   scope `openid offline_access`. Bound: two RS256 signatures (the access token and the ID
//!   token; refresh tokens are opaque random values).

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde::Serialize;
use serde_json::{Value, json};

use crate::Error;
use crate::agora::{Agora, REDIRECT_URI};
use crate::load::{Client, Stats, run};

const ISSUER: &str = "https://idp.bench.invalid";
const AUDIENCE: &str = "agora-bench";
/// Distinct subject tokens the exchanges cycle through. They carry no `jti` (as Google's do not),
/// so each can be exchanged again, and the bench's own signing stays out of the measurement.
const POOL: usize = 64;
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
const REFRESH_SCOPE: &str = "openid offline_access";
const REFRESH_USER: &str = "refresh@bench.invalid";
const EXCHANGE_BOUND: &str = "1 RS256 verification (subject token) + 1 RS256 signature (access token)";
const REFRESH_BOUND: &str = "2 RS256 signatures (access token, ID token); refresh tokens are opaque";

/// The bench as an identity provider: an RSA-2048 key, as agora's own RS256 keys are.
struct Idp {
    encoding: EncodingKey,
    decoding: DecodingKey,
    public_pem: String,
}

impl Idp {
    fn generate() -> Result<Self, Error> {
        let pair = aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048)?;
        let private_pem = pem::encode(&pem::Pem::new("PRIVATE KEY", pair.as_der()?.as_ref().to_vec()));
        let public_pem = pem::encode(&pem::Pem::new("PUBLIC KEY", pair.public_key().as_der()?.as_ref().to_vec()));
        // Parsed the way agora parses its own keys and a provider's static key.
        Ok(Self {
            encoding: EncodingKey::from_rsa_pem(private_pem.as_bytes())?,
            decoding: DecodingKey::from_rsa_pem(public_pem.as_bytes())?,
            public_pem,
        })
    }

    fn sign(&self, claims: &Value, typ: &str) -> Result<String, Error> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("bench".to_owned());
        header.typ = Some(typ.to_owned());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }

    /// An ID token for user `i`, shaped like a big provider's.
    fn id_token(&self, i: usize) -> Result<String, Error> {
        let now = unix_now();
        let claims = json!({
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": format!("bench-user-{i}"),
            "email": format!("user{i}@idp.bench.invalid"),
            "email_verified": true,
            "name": format!("Bench User {i}"),
            "iat": now,
            "exp": now + 3600,
        });
        self.sign(&claims, "JWT")
    }

    /// The checks agora's federation makes of a subject token (same validation settings).
    fn verify(&self, token: &str) -> Result<(), Error> {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.leeway = 60;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &self.decoding, &validation)?;
        Ok(())
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Operations per second when each is `verifies` verifications and `signs` signatures, on one
/// thread per core, alone in this process (nothing else of the bench runs meanwhile).
async fn crypto_bound(
    idp: Arc<Idp>,
    subject_token: String,
    verifies: usize,
    signs: usize,
    duration: Duration,
) -> Result<f64, Error> {
    tokio::task::spawn_blocking(move || {
        // An access token's claims as agora's are (RFC 9068 profile).
        let now = unix_now();
        let claims = json!({
            "iss": "http://127.0.0.1:8080/oauth",
            "sub": "0b5e1f52-8f0d-4a9e-9d2f-3c1e6c1d7a11",
            "aud": ["civic"],
            "client_id": "5d0c3a7e-2b1f-4f6a-8e3d-9a7b6c5d4e3f",
            "scope": "openid email profile",
            "iat": now,
            "exp": now + 3600,
            "jti": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
        });
        let started = Instant::now();
        let deadline = started + duration;
        let ops = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..cores())
                .map(|_| {
                    scope.spawn(|| {
                        let mut ops = 0usize;
                        while Instant::now() < deadline {
                            for _ in 0..verifies {
                                idp.verify(&subject_token)?;
                            }
                            for _ in 0..signs {
                                idp.sign(&claims, "at+jwt")?;
                            }
                            ops += 1;
                        }
                        Ok::<_, Error>(ops)
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().map_err(|_| Error::from("a bound thread panicked"))?)
                .sum::<Result<usize, Error>>()
        })?;
        Ok(ops as f64 / started.elapsed().as_secs_f64())
    })
    .await?
}

/// `POST /oauth/token` as one confidential client (client_secret_basic), over its own connection.
struct TokenEndpoint {
    http: reqwest::Client,
    url: String,
    client_id: String,
    secret: String,
}

impl TokenEndpoint {
    fn new(url: String, client_id: String, secret: String) -> Result<Self, Error> {
        Ok(Self { http: reqwest::Client::builder().build()?, url, client_id, secret })
    }

    /// The same client on a connection of its own (a `reqwest::Client` clone would share the pool).
    fn reconnect(&self) -> Result<Self, Error> {
        Self::new(self.url.clone(), self.client_id.clone(), self.secret.clone())
    }

    async fn post(&self, form: &[(&str, &str)]) -> Result<Value, Error> {
        let response =
            self.http.post(&self.url).basic_auth(&self.client_id, Some(&self.secret)).form(form).send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        if !status.is_success() {
            return Err(format!("the token endpoint answered {status}: {}", String::from_utf8_lossy(&body)).into());
        }
        Ok(serde_json::from_slice(&body)?)
    }

    async fn exchange(&self, subject_token: &str) -> Result<(), Error> {
        let answer = self
            .post(&[
                ("grant_type", TOKEN_EXCHANGE),
                ("subject_token", subject_token),
                ("subject_token_type", ID_TOKEN_TYPE),
            ])
            .await?;
        if !answer["access_token"].is_string() {
            return Err("no access token in the answer".into());
        }
        Ok(())
    }
}

struct Exchange {
    endpoint: TokenEndpoint,
    subject_tokens: Arc<Vec<String>>,
    next: usize,
}

impl Client for Exchange {
    async fn call(&mut self) -> Result<(), Error> {
        self.next = (self.next + 1) % self.subject_tokens.len();
        self.endpoint.exchange(&self.subject_tokens[self.next]).await
    }
}

/// One chain of refresh tokens: each refresh spends the current token and returns its successor.
struct Refresh {
    endpoint: TokenEndpoint,
    refresh_token: String,
}

impl Client for Refresh {
    async fn call(&mut self) -> Result<(), Error> {
        let answer =
            self.endpoint.post(&[("grant_type", "refresh_token"), ("refresh_token", &self.refresh_token)]).await?;
        answer["refresh_token"].as_str().ok_or("no refresh token in the answer")?.clone_into(&mut self.refresh_token);
        Ok(())
    }
}

/// A browser signing in to agora as [`REFRESH_USER`], starting code flows (PKCE) for one client.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: Vec<String>,
    client_id: String,
    password: String,
}

/// A fixed PKCE pair: the bench needs no secrecy, only a verifier agora accepts.
const CODE_VERIFIER: &str = "agora-bench-code-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";

impl Browser {
    /// Sends `request` with the cookies held, and keeps those the answer sets.
    async fn send(&mut self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, Error> {
        let request = match self.cookies.is_empty() {
            true => request,
            false => request.header(COOKIE, self.cookies.join("; ")),
        };
        let response = request.send().await?;
        for set in response.headers().get_all(SET_COOKIE) {
            if let Some((name, value)) = set.to_str().ok().and_then(|v| v.split(';').next()?.split_once('=')) {
                self.cookies.retain(|c| !c.starts_with(&format!("{name}=")));
                self.cookies.push(format!("{name}={value}"));
            }
        }
        Ok(response)
    }

    /// Runs the code flow once (signing in with the password form the first time, then on the
    /// browser session) and redeems the code; returns the refresh token.
    async fn refresh_token(&mut self, endpoint: &TokenEndpoint) -> Result<String, Error> {
        let challenge =
            URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, CODE_VERIFIER.as_bytes()));
        let authorize = self.http.get(format!("{}/oauth/auth", self.base)).query(&[
            ("response_type", "code"),
            ("client_id", &self.client_id),
            ("redirect_uri", REDIRECT_URI),
            ("scope", REFRESH_SCOPE),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ]);
        let mut response = self.send(authorize).await?;
        if response.status().is_success() {
            let page = response.text().await?;
            let form = [
                ("request", hidden_field(&page, "request")?),
                ("csrf", hidden_field(&page, "csrf")?),
                ("email", REFRESH_USER),
                ("password", &self.password),
            ];
            let login = self.http.post(format!("{}/oauth/login", self.base)).form(&form);
            response = self.send(login).await?;
        }
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| format!("sign-in answered {} without a redirect", response.status()))?;
        let code = reqwest::Url::parse(location)?
            .query_pairs()
            .find_map(|(name, value)| (name == "code").then(|| value.into_owned()))
            .ok_or_else(|| format!("no code in the redirect: {location}"))?;
        let answer = endpoint
            .post(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT_URI),
                ("code_verifier", CODE_VERIFIER),
            ])
            .await?;
        Ok(answer["refresh_token"].as_str().ok_or("no refresh token (offline_access not granted?)")?.to_owned())
    }
}

/// The value of a hidden input of agora's sign-in page.
fn hidden_field<'a>(page: &'a str, name: &str) -> Result<&'a str, Error> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).ok_or_else(|| format!("no `{name}` field on the sign-in page"))? + marker.len();
    Ok(page[start..].split('"').next().unwrap_or_default())
}

#[derive(Serialize)]
struct Step {
    clients: usize,
    stats: Stats,
    ratio: f64,
}

#[derive(Serialize)]
struct Grant {
    grant: &'static str,
    bound: &'static str,
    bound_per_s: f64,
    steps: Vec<Step>,
}

impl Grant {
    fn step(&mut self, clients: usize, stats: Stats) {
        let ratio = stats.ratio_to(self.bound_per_s);
        println!(
            "{:<15} {:>9.0} {:>7} {:>8.0} {:>8.0} {:>8.0} {:>6.2}",
            self.grant, self.bound_per_s, clients, stats.throughput, stats.p50_us, stats.p99_us, ratio
        );
        stats.print_errors(self.grant);
        self.steps.push(Step { clients, stats, ratio });
    }
}

pub async fn token_exchange(clients: &[usize], duration: Duration) -> Result<Value, Error> {
    let agora =
        Agora::start(&[("AGORA_SIGNING_ALG", "RS256"), ("AGORA_DEMO_UPSTREAM", "false"), ("AGORA_LOG", "warn")])
            .await?;
    let idp = Arc::new(Idp::generate()?);
    let key_file = agora.path("idp-public.pem");
    std::fs::write(&key_file, &idp.public_pem)?;
    let (client_id, secret) = agora.create_client(&["--token-exchange"]).await?;
    agora
        .cli(&[
            "admin",
            "provider",
            "add",
            "--client",
            &client_id,
            "--issuer",
            ISSUER,
            "--audience",
            AUDIENCE,
            "--public-key-file",
            &key_file.to_string_lossy(),
        ])
        .await?;
    let endpoint = TokenEndpoint::new(format!("{}/oauth/token", agora.url), client_id.clone(), secret)?;
    let subject_tokens = Arc::new((0..POOL).map(|i| idp.id_token(i)).collect::<Result<Vec<_>, _>>()?);
    // The first exchange of each creates its user; the measured ones find them.
    for token in subject_tokens.iter() {
        endpoint.exchange(token).await?;
    }
    let threads = cores();
    println!(
        "token-exchange: POST /oauth/token, {} s per step, against its crypto alone in-process on {threads} threads",
        duration.as_secs()
    );
    println!(
        "{:<15} {:>9} {:>7} {:>8} {:>8} {:>8} {:>6}",
        "grant", "bound/s", "clients", "grants/s", "p50 µs", "p99 µs", "ratio"
    );

    let bound = crypto_bound(idp.clone(), subject_tokens[0].clone(), 1, 1, duration).await?;
    let mut exchange = Grant { grant: "token-exchange", bound: EXCHANGE_BOUND, bound_per_s: bound, steps: Vec::new() };
    for &n in clients {
        let workers = (0..n)
            .map(|i| Ok(Exchange { endpoint: endpoint.reconnect()?, subject_tokens: subject_tokens.clone(), next: i }))
            .collect::<Result<Vec<_>, Error>>()?;
        exchange.step(n, run(workers, duration).await?);
    }

    let created = agora.cli(&["admin", "user", "create", "--email", REFRESH_USER]).await?;
    let password = created
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or("no generated password")?;
    let mut browser = Browser {
        http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?,
        base: agora.url.clone(),
        cookies: Vec::new(),
        client_id,
        password: password.to_owned(),
    };
    let bound = crypto_bound(idp, subject_tokens[0].clone(), 0, 2, duration).await?;
    let mut refresh = Grant { grant: "refresh_token", bound: REFRESH_BOUND, bound_per_s: bound, steps: Vec::new() };
    for &n in clients {
        // Each client refreshes its own chain (rotation spends every token); each step starts fresh chains.
        let mut workers = Vec::with_capacity(n);
        for _ in 0..n {
            workers.push(Refresh {
                refresh_token: browser.refresh_token(&endpoint).await?,
                endpoint: endpoint.reconnect()?,
            });
        }
        refresh.step(n, run(workers, duration).await?);
    }
    println!("        bound per token-exchange: {EXCHANGE_BOUND}");
    println!("        bound per refresh_token: {REFRESH_BOUND} (scope {REFRESH_SCOPE})");
    println!("        (target: ratio ≥ 0.5)");
    Ok(json!({
        "scenario": "token-exchange",
        "seconds": duration.as_secs(),
        "bound_threads": threads,
        "refresh_scope": REFRESH_SCOPE,
        "grants": [exchange, refresh],
    }))
}
