//! Passphrase-encrypted private keys (`worker-release keygen --encrypt`): the real
//! `worker-release`, real key files, the passphrase from `WORKER_RELEASE_PASSPHRASE_FILE` and
//! never from a standard input that is no terminal.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use e2e::Sandbox;

const ENV: &str = "WORKER_RELEASE_PASSPHRASE_FILE";
const PASSPHRASE: &str = "correct horse battery staple";

/// Opens an encrypted key file with age itself (not through worker-release): the plain key file.
fn decrypt_with_age(encrypted: &[u8], passphrase: &str) -> serde_json::Value {
    let decryptor = age::Decryptor::new_buffered(age::armor::ArmoredReader::new(encrypted))
        .expect("an age file");
    let identity = age::scrypt::Identity::new(passphrase.to_owned().into());
    let mut plain = Vec::new();
    decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .expect("the passphrase opens it")
        .read_to_end(&mut plain)
        .expect("decrypt");
    serde_json::from_slice(&plain).expect("the plain key file inside")
}

/// The one `worker-release: error` line of a failed run.
fn error_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("worker-release: error"))
        .collect();
    assert_eq!(lines.len(), 1, "one error line: {stderr}");
    lines[0].to_owned()
}

fn sign_release(sb: &Sandbox, key: &str, out: &str, env: &[(&str, &Path)]) -> e2e::Run {
    sb.release_cli_with_env(
        &[
            "sign-release",
            "--version",
            "1.2.0",
            "--artifact",
            "x86_64-unknown-linux-gnu=artifact",
            "--key",
            key,
            "--root",
            "root.json",
            "--out",
            out,
        ],
        env,
    )
}

#[test]
fn an_encrypted_key_signs_with_the_passphrase_file_and_a_wrong_or_missing_one_is_refused() {
    let sb = Sandbox::new();
    let passphrase = sb.write_secret("passphrase", format!("{PASSPHRASE}\n"));
    let wrong = sb.write_secret("wrong-passphrase", "Tr0ub4dor&3\n");
    let with = [(ENV, passphrase.as_path())];
    for name in ["root", "channel"] {
        sb.release_cli(&["keygen", "--out", "keys", "--name", name])
            .success();
    }
    let out = sb
        .release_cli_with_env(
            &["keygen", "--encrypt", "--out", "keys", "--name", "release"],
            &with,
        )
        .success();
    assert!(out.contains("passphrase-encrypted"), "{out}");

    // The key file: mode 0600, an armoured age file that age itself opens with the passphrase,
    // holding the plain key file of the `.pub` next to it; the raw key appears nowhere in it.
    let key_path = sb.join("keys/release.key");
    let mode = std::fs::metadata(&key_path)
        .expect("key")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let encrypted = std::fs::read(&key_path).expect("read key");
    let text = String::from_utf8_lossy(&encrypted);
    assert!(text.starts_with(manifests::ENCRYPTED_KEY_HEADER), "{text}");
    let plain = decrypt_with_age(&encrypted, PASSPHRASE);
    let public: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sb.join("keys/release.pub")).expect("pub"))
            .expect("json");
    assert_eq!(plain["keyid"], public["keyid"]);
    let seed_hex = plain["private"].as_str().expect("private").to_owned();
    assert_eq!(seed_hex.len(), 64);
    let mut seed = [0u8; 32];
    for (i, byte) in seed.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&seed_hex[2 * i..2 * i + 2], 16).expect("hex");
    }
    assert!(!text.contains(&seed_hex), "hex key in the file");
    assert!(
        !encrypted.windows(32).any(|w| w == seed),
        "raw key bytes in the file"
    );
    assert!(!text.contains("\"private\""), "{text}");

    sb.release_cli(&[
        "init-root",
        "--root-key",
        "keys/root.pub",
        "--release-key",
        "keys/release.pub",
        "--channel-key",
        "keys/channel.pub",
        "--key",
        "keys/root.key",
        "--out",
        "root.json",
    ])
    .success();
    sb.write("artifact", b"an artifact".repeat(100));

    // With the passphrase file: signs, and the result verifies against the root.
    sign_release(&sb, "keys/release.key", "release.json", &with).success();
    let ok = sb
        .release_cli(&["verify", "--root", "root.json", "release.json"])
        .success();
    assert!(ok.starts_with("OK: release.json: release"), "{ok}");
    // `sign` (threshold ceremonies) opens it the same way; the document still verifies.
    let signed = sb
        .release_cli_with_env(
            &["sign", "release.json", "--key", "keys/release.key"],
            &with,
        )
        .success();
    assert!(signed.contains("1 signature(s)"), "{signed}");
    sb.release_cli(&["verify", "--root", "root.json", "release.json"])
        .success();

    // A wrong passphrase: refused with its label, nothing written.
    let err = error_line(
        &sign_release(
            &sb,
            "keys/release.key",
            "wrong.json",
            &[(ENV, wrong.as_path())],
        )
        .failure(),
    );
    assert!(
        err.starts_with("worker-release: error [wrong_passphrase]: ")
            && err.contains("keys/release.key")
            && err.contains(ENV),
        "{err}"
    );
    assert!(!sb.join("wrong.json").exists());

    // No passphrase file and no terminal: refused at once naming the variable, never waiting on
    // standard input.
    let started = Instant::now();
    let err = error_line(&sign_release(&sb, "keys/release.key", "none.json", &[]).failure());
    assert!(
        err.starts_with("worker-release: error [passphrase_required]: ")
            && err.contains(ENV)
            && err.contains("no terminal"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(60), "it waited");
    assert!(!sb.join("none.json").exists());

    // A damaged encrypted key: named as such, not mistaken for a wrong passphrase.
    let cut = &text[..text.len() / 2];
    sb.write_secret("keys/damaged.key", cut);
    let err = error_line(&sign_release(&sb, "keys/damaged.key", "damaged.json", &with).failure());
    assert!(
        err.starts_with("worker-release: error [malformed]: ")
            && err.contains("not a readable encrypted key file"),
        "{err}"
    );

    // keygen --encrypt without a passphrase: refused the same way, and no key is written.
    let err = sb
        .release_cli(&[
            "keygen",
            "--encrypt",
            "--out",
            "keys",
            "--name",
            "release-2",
        ])
        .failure();
    assert!(
        err.contains("[passphrase_required]") && err.contains(ENV),
        "{err}"
    );
    assert!(!sb.join("keys/release-2.key").exists());

    // The passphrase file is a secret like a key: one others can read is refused.
    std::fs::set_permissions(&passphrase, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = sign_release(&sb, "keys/release.key", "loose.json", &with).failure();
    assert!(
        err.contains("[key_permissions]") && err.contains(ENV) && err.contains("chmod 600"),
        "{err}"
    );
}
