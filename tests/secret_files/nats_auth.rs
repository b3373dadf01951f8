//! What a TLS nats-server and its users need, made at test time: a CA and a server certificate
//! (rcgen), and an operator, accounts and a user as signed NATS JWTs with a `.creds` file (nkeys),
//! as `nsc` would make them.

use std::path::Path;

use super::write;

/// A CA and a server certificate for 127.0.0.1 it signed: (ca.pem, cert.pem, key.pem).
pub fn certificates(dir: &Path) -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa,
        KeyPair,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut server = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = server.signed_by(&key, &ca).unwrap();
    (
        write(dir, "ca.pem", &ca.pem()),
        write(dir, "server.pem", &server.pem()),
        write(dir, "server-key.pem", &key.serialize_pem()),
    )
}

/// A NATS JWT (the `ed25519-nkey` kind nats-server reads) with `nats` as its NATS claims, about
/// `subject`, signed by `issuer`.
fn nats_jwt(issuer: &nkeys::KeyPair, subject: &str, nats: serde_json::Value) -> String {
    use base64::Engine as _;
    let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let header = serde_json::json!({ "typ": "JWT", "alg": "ed25519-nkey" });
    let claims = serde_json::json!({
        "jti": uuid::Uuid::new_v4().simple().to_string().to_uppercase(),
        "iat": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        "iss": issuer.public_key(),
        "sub": subject,
        "name": "secret-files-test",
        "nats": nats,
    });
    let signed = format!(
        "{}.{}",
        encode(header.to_string().as_bytes()),
        encode(claims.to_string().as_bytes())
    );
    let signature = issuer.sign(signed.as_bytes()).expect("sign the JWT");
    format!("{signed}.{}", encode(&signature))
}

/// An operator, an account with JetStream, and a user of it: the server's config lines (which
/// trust the operator and know the account) and the user's `.creds` file, as `nsc` makes them.
pub fn operator_mode(dir: &Path) -> (String, String) {
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    let operator_jwt = nats_jwt(
        &operator,
        &operator.public_key(),
        serde_json::json!({ "type": "operator", "version": 2 }),
    );
    let account_jwt = nats_jwt(
        &operator,
        &account.public_key(),
        serde_json::json!({
            "type": "account", "version": 2,
            "limits": {
                "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                "wildcards": true, "conn": -1, "leaf": -1,
                "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
            },
        }),
    );
    let user_jwt = nats_jwt(
        &account,
        &user.public_key(),
        serde_json::json!({
            "type": "user", "version": 2, "pub": {}, "sub": {},
            "subs": -1, "data": -1, "payload": -1,
        }),
    );
    // The server's own account, which an operator-mode server with JetStream needs.
    let system = nkeys::KeyPair::new_account();
    let system_jwt = nats_jwt(
        &operator,
        &system.public_key(),
        serde_json::json!({ "type": "account", "version": 2, "limits": { "conn": -1 } }),
    );
    let operator_file = write(dir, "operator.jwt", &operator_jwt);
    let server = format!(
        "operator: \"{operator_file}\"\nsystem_account: {system}\nresolver: MEMORY\n\
         resolver_preload: {{\n  {system}: \"{system_jwt}\"\n  {account}: \"{account_jwt}\"\n}}\n",
        system = system.public_key(),
        account = account.public_key(),
    );
    let creds = format!(
        "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n",
        user.seed().unwrap()
    );
    (server, write(dir, "user.creds", &creds))
}
