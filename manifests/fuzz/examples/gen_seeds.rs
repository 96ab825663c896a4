//! Writes the seed corpus (`seeds/*.json`): the fixture's documents, validly signed, so the
//! fuzzer starts from inputs that pass signature checks and reach the deep verification code.
//!
//!     cargo run --example gen_seeds          # from manifests/fuzz, no nightly needed

use std::path::Path;

fn main() {
    let fixture = manifests_fuzz::build();
    manifests_fuzz::self_check(&fixture);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    std::fs::create_dir_all(&dir).expect("create seeds/");
    for (name, bytes) in manifests_fuzz::seeds(&fixture) {
        let path = dir.join(name);
        std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        println!("{} ({} bytes)", path.display(), bytes.len());
    }
}
