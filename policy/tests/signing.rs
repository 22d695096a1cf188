//! Signed bundles: a good signature is accepted, and a tampered, unsigned
//! or foreign-key policy is rejected with its reason; reformatting a
//! signed policy keeps its signature valid.

use std::path::{Path, PathBuf};

use policy::signature::{generate_key, sign};
use policy::{verify, Rejection};

const POLICY: &str =
    "[policy]\nmode = \"enforce\"\n\n[[rule]]\nid = \"meta\"\naction = \"deny\"\ncidrs = [\"169.254.169.254/32\"]\n";

struct Setup {
    _dir: tempfile::TempDir,
    policy: PathBuf,
    key: PathBuf,
    trust: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).expect("write");
    let trust = dir.path().join("trust");
    std::fs::create_dir(&trust).expect("trust dir");
    let id = generate_key(&trust.join("ops")).expect("keygen");
    assert_eq!(id.fingerprint.len(), 16);
    let key = dir.path().join("ops.key");
    std::fs::rename(trust.join("ops.key"), &key).expect("move the secret key out of the trust store");
    Setup { _dir: dir, policy, key, trust }
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn good_signature_is_accepted_and_survives_reformatting() {
    let setup = setup();
    assert_eq!(mode(&setup.key), 0o600);
    let (sig_path, signer) = sign(&setup.policy, &setup.key).expect("sign");
    assert_eq!(sig_path, setup.policy.with_extension("toml.sig"));
    let accepted = verify(&setup.policy, &setup.trust).expect("verifies");
    assert_eq!(accepted.fingerprint, signer.fingerprint);
    assert_eq!(accepted.name.as_deref(), Some("ops"));
    // Comments and key order are not part of the canonical bytes.
    let reformatted = "# reviewed\n[[rule]]\ncidrs = [ \"169.254.169.254/32\" ]\naction = \"deny\"\nid = \"meta\"\n[policy]\nmode = \"enforce\"\n";
    std::fs::write(&setup.policy, reformatted).expect("rewrite");
    assert!(verify(&setup.policy, &setup.trust).is_ok());
}

#[test]
fn tampered_policy_is_rejected() {
    let setup = setup();
    sign(&setup.policy, &setup.key).expect("sign");
    let tampered = POLICY.replace("169.254.169.254/32", "169.254.169.253/32");
    std::fs::write(&setup.policy, tampered).expect("tamper");
    let rejection = verify(&setup.policy, &setup.trust).expect_err("tampered");
    assert!(matches!(rejection, Rejection::BadSignature { .. }), "{rejection}");
    assert_eq!(rejection.code(), "bad_signature");

    // One flipped byte of the signature itself.
    std::fs::write(&setup.policy, POLICY).expect("restore");
    let sig_path = policy::signature_path(&setup.policy);
    let mut document: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&sig_path).expect("sig")).expect("json");
    let signature = document["signature"].as_str().expect("hex").to_owned();
    let rest = signature.get(1..).expect("hex digits");
    let flipped = if signature.starts_with('0') { format!("1{rest}") } else { format!("0{rest}") };
    document["signature"] = serde_json::Value::from(flipped);
    std::fs::write(&sig_path, document.to_string()).expect("write sig");
    assert!(matches!(verify(&setup.policy, &setup.trust), Err(Rejection::BadSignature { .. })));
}

#[test]
fn unsigned_and_unknown_key_are_rejected() {
    let setup = setup();
    let unsigned = verify(&setup.policy, &setup.trust).expect_err("unsigned");
    assert!(matches!(unsigned, Rejection::Unsigned { .. }), "{unsigned}");
    assert!(unsigned.to_string().starts_with("unsigned: no signature at "), "{unsigned}");

    let other = tempfile::tempdir().expect("tempdir");
    generate_key(&other.path().join("stranger")).expect("keygen");
    sign(&setup.policy, &other.path().join("stranger.key")).expect("sign");
    let unknown = verify(&setup.policy, &setup.trust).expect_err("unknown key");
    assert!(matches!(unknown, Rejection::UnknownKey { .. }), "{unknown}");

    std::fs::write(policy::signature_path(&setup.policy), "not json").expect("write");
    assert!(matches!(verify(&setup.policy, &setup.trust), Err(Rejection::Unreadable { .. })));
    assert!(matches!(verify(&setup.policy, &setup.trust.join("absent")), Err(Rejection::Unreadable { .. })));
}

#[test]
fn a_directory_is_signed_as_one_bundle() {
    let setup = setup();
    let dir = setup.policy.parent().expect("parent").join("bundle");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(dir.join("10-a.toml"), POLICY).expect("write");
    std::fs::write(dir.join("20-b.toml"), "[[rule]]\nid = \"b\"\naction = \"audit\"\ncidrs = [\"192.0.2.0/24\"]\n")
        .expect("write");
    let (sig_path, _) = sign(&dir, &setup.key).expect("sign");
    assert_eq!(sig_path, dir.join("bundle.sig"));
    assert!(verify(&dir, &setup.trust).is_ok());
    std::fs::write(
        dir.join("30-c.toml"),
        "[[rule]]\nid = \"c\"\naction = \"allow\"\ncidrs = [\"192.0.2.0/24\"]\npriority = 3\n",
    )
    .expect("add a file");
    assert!(matches!(verify(&dir, &setup.trust), Err(Rejection::BadSignature { .. })));
}

#[test]
fn keygen_refuses_to_overwrite() {
    let dir = tempfile::tempdir().expect("tempdir");
    generate_key(&dir.path().join("k")).expect("first");
    assert!(generate_key(&dir.path().join("k")).is_err());
}
