//! Store behaviour, run against SQLite and (when reachable, and always under CI) PostgreSQL.

use agora_core::client::{AuthMethod, ClientOrigin, GrantType};

use super::*;
use crate::secret::{random_token, token_digest};

/// A PostgreSQL server to test against: `AGORA_TEST_POSTGRES_URL`, else the local default.
fn postgres_admin_url() -> String {
    std::env::var("AGORA_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh database on the test PostgreSQL server, and the admin pool that will drop it.
async fn fresh_postgres(master: &MasterKey) -> Option<(Store, AnyPool, String)> {
    sqlx::any::install_default_drivers();
    let admin_url = postgres_admin_url();
    let admin = match AnyPoolOptions::new().max_connections(1).connect(&admin_url).await {
        Ok(pool) => pool,
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("skipping PostgreSQL half: {e} (CI fails here instead)");
            return None;
        }
        Err(e) => panic!("PostgreSQL at {admin_url} is required under CI: {e}"),
    };
    let name = format!("agora_store_{}", uuid::Uuid::new_v4().simple());
    admin.execute(AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.unwrap();
    let mut url = url::Url::parse(&admin_url).unwrap();
    url.set_path(&name);
    Some((Store::open(url.as_str(), master).await.unwrap(), admin, name))
}

/// Runs `test` against a fresh SQLite store and a fresh PostgreSQL database, then removes both.
async fn each_store(test: impl AsyncFn(&Store)) {
    let master = MasterKey::generate();
    let dir = std::env::temp_dir().join(format!("agora-store-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite = Store::open(&format!("sqlite://{}?mode=rwc", dir.join("agora.db").display()), &master).await.unwrap();
    test(&sqlite).await;
    sqlite.close().await;
    std::fs::remove_dir_all(&dir).unwrap();
    if let Some((postgres, admin, name)) = fresh_postgres(&master).await {
        test(&postgres).await;
        postgres.close().await;
        admin.execute(AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)"))).await.unwrap();
    }
}

async fn client_and_user(store: &Store) -> (String, String) {
    let client = store
        .create_client(
            NewClient {
                id: uuid::Uuid::new_v4().to_string(),
                name: "app".into(),
                secret_digest: Some(token_digest("s")),
                auth_method: AuthMethod::ClientSecretBasic,
                redirect_uris: vec!["https://app.example/cb".into()],
                post_logout_redirect_uris: vec![],
                grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
                origin: ClientOrigin::Admin,
            },
            1,
        )
        .await
        .unwrap();
    let user = store
        .create_user(
            NewUser {
                email: Some(format!("{}@x.test", uuid::Uuid::new_v4())),
                email_verified: true,
                name: None,
                password_hash: None,
            },
            1,
        )
        .await
        .unwrap();
    (client.id, user.id)
}

fn grant(client_id: &str, user_id: &str) -> Grant {
    Grant {
        id: uuid::Uuid::new_v4().to_string(),
        client_id: client_id.into(),
        user_id: user_id.into(),
        scope: "openid offline_access".into(),
        resource: None,
        auth_time: 10,
        revoked: false,
    }
}

#[tokio::test]
async fn wrong_master_key_is_refused_at_open() {
    let dir = std::env::temp_dir().join(format!("agora-store-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("agora.db").display());
    let key = MasterKey::generate();
    Store::open(&url, &key).await.unwrap().close().await;
    Store::open(&url, &key).await.unwrap().close().await;
    let err = Store::open(&url, &MasterKey::generate()).await.err().expect("a wrong key must be refused");
    assert!(matches!(err, StoreError::Secret(SecretError::Undecryptable)), "{err}");
}

#[tokio::test]
async fn codes_redeem_once_and_replay_revokes_the_grant() {
    each_store(async |store: &Store| {
        let (client_id, user_id) = client_and_user(store).await;
        let grant = grant(&client_id, &user_id);
        let code = StoredCode {
            redirect_uri: "https://app.example/cb".into(),
            nonce: None,
            code_challenge: "c".into(),
            expires_at: 100,
        };
        store.create_grant_with_code(&grant, "digest", &code, 10).await.unwrap();
        assert!(matches!(store.redeem_code("digest", 11).await.unwrap(), CodeRedemption::Redeemed));
        assert!(!store.grant(&grant.id).await.unwrap().unwrap().revoked);
        assert!(matches!(store.redeem_code("digest", 12).await.unwrap(), CodeRedemption::Replayed));
        assert!(store.grant(&grant.id).await.unwrap().unwrap().revoked);
        assert!(matches!(store.redeem_code("other", 12).await.unwrap(), CodeRedemption::Unknown));
    })
    .await;
}

#[tokio::test]
async fn refresh_reuse_revokes_the_family() {
    each_store(async |store: &Store| {
        let (client_id, user_id) = client_and_user(store).await;
        let grant = grant(&client_id, &user_id);
        let code = StoredCode { redirect_uri: "x".into(), nonce: None, code_challenge: "c".into(), expires_at: 100 };
        store.create_grant_with_code(&grant, &random_token("c"), &code, 10).await.unwrap();
        store.insert_refresh_token("r1", &grant.id, "openid", 10, 1000).await.unwrap();
        let RefreshRotation::Rotated { grant_id, scope, .. } =
            store.spend_refresh_token("r1", "r2", 1000, 11).await.unwrap()
        else {
            panic!("first use must rotate")
        };
        assert_eq!((grant_id.as_str(), scope.as_str()), (grant.id.as_str(), "openid"));
        let (successor_grant, successor_scope, _) =
            store.refresh_token("r2").await.unwrap().expect("the successor is stored with it");
        assert_eq!((successor_grant.id.as_str(), successor_scope.as_str()), (grant.id.as_str(), "openid"));
        assert!(matches!(store.spend_refresh_token("r1", "r3", 1000, 12).await.unwrap(), RefreshRotation::Reused));
        assert!(store.refresh_token("r3").await.unwrap().is_none(), "a reused token gets no successor");
        let (family, _, _) = store.refresh_token("r2").await.unwrap().unwrap();
        assert!(family.revoked, "reuse of r1 must revoke r2's grant");
    })
    .await;
}

#[tokio::test]
async fn login_codes_burn_after_too_many_guesses() {
    each_store(async |store: &Store| {
        store.insert_login_code("l1", "a@b.c", &token_digest("123456"), 100).await.unwrap();
        for _ in 0..sessions::LOGIN_CODE_MAX_ATTEMPTS - 1 {
            assert_eq!(store.verify_login_code("l1", &token_digest("000000"), 10).await.unwrap(), None);
        }
        assert_eq!(store.verify_login_code("l1", &token_digest("123456"), 10).await.unwrap().as_deref(), Some("a@b.c"));
        assert_eq!(store.verify_login_code("l1", &token_digest("123456"), 10).await.unwrap(), None, "spent");

        store.insert_login_code("l2", "a@b.c", &token_digest("654321"), 100).await.unwrap();
        for _ in 0..sessions::LOGIN_CODE_MAX_ATTEMPTS {
            store.verify_login_code("l2", &token_digest("000000"), 10).await.unwrap();
        }
        assert_eq!(store.verify_login_code("l2", &token_digest("654321"), 10).await.unwrap(), None, "burnt");
        assert_eq!(store.verify_login_code("l3", &token_digest("654321"), 10).await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn rate_limits_count_per_bucket_and_window() {
    each_store(async |store: &Store| {
        assert_eq!(store.rate_limit_hit("ip:1", 0).await.unwrap(), 1);
        assert_eq!(store.rate_limit_hit("ip:1", 0).await.unwrap(), 2);
        assert_eq!(store.rate_limit_hit("ip:2", 0).await.unwrap(), 1);
        assert_eq!(store.rate_limit_hit("ip:1", 300).await.unwrap(), 1);
        assert_eq!(store.rate_limit_count("ip:1", 0).await.unwrap(), 2);
    })
    .await;
}

#[tokio::test]
async fn duplicate_emails_conflict_and_signing_keys_are_sealed() {
    each_store(async |store: &Store| {
        let new =
            || NewUser { email: Some("dup@x.test".into()), email_verified: false, name: None, password_hash: None };
        store.create_user(new(), 1).await.unwrap();
        assert!(matches!(store.create_user(new(), 1).await, Err(StoreError::Conflict(_))));

        let key = |kid: &str| NewKey {
            kid: kid.into(),
            alg: "RS256".into(),
            private_key_pem: b"PRIVATE-PEM".to_vec(),
            public_jwk: "{}".into(),
        };
        assert!(store.install_initial_keys(&key("k1"), &key("k2"), 1).await.unwrap());
        assert!(!store.install_initial_keys(&key("k3"), &key("k4"), 1).await.unwrap(), "second install is a no-op");
        assert_eq!(store.active_kid().await.unwrap().as_deref(), Some("k1"));
        assert_eq!(store.rotate_keys(&key("k5"), 2).await.unwrap(), "k2");
        let states: Vec<(String, String)> =
            store.published_keys().await.unwrap().into_iter().map(|k| (k.kid, k.state)).collect();
        assert!(states.contains(&("k1".into(), "retired".into())));
        assert!(states.contains(&("k2".into(), "active".into())));
        assert!(states.contains(&("k5".into(), "next".into())));
        assert!(store.published_keys().await.unwrap().iter().all(|k| k.private_key_pem == b"PRIVATE-PEM"));
        let raw: Vec<u8> = sqlx::query_scalar("SELECT private_key FROM signing_keys WHERE kid = 'k1'")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert!(!raw.windows(11).any(|w| w == b"PRIVATE-PEM"), "private key stored in plain text");
    })
    .await;
}

#[tokio::test]
async fn audit_batches_larger_than_one_statement_are_kept_whole() {
    each_store(async |store: &Store| {
        let entries: Vec<AuditEntry> = (0..1203)
            .map(|i| AuditEntry {
                id: format!("entry-{i:05}"),
                account_id: Some("default".into()),
                at: 1_000 + i,
                actor: "user-1".into(),
                action: "tools/call".into(),
                detail: serde_json::json!({"tool": "t", "n": i}),
            })
            .collect();
        store.append_audit(&entries).await.unwrap();
        let stored = store.audit("default", 0, i64::MAX, 5_000).await.unwrap();
        assert_eq!(stored, entries);
    })
    .await;
}
