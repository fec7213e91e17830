//! Every shipped run config parses, validates and round-trips through its snapshot.
use labbook_models::RunConfig;

#[test]
fn shipped_configs_are_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        // labbook.toml is the app's own settings file, not a run config.
        if !name.ends_with(".toml") || name == "labbook.toml" {
            continue;
        }
        let cfg = RunConfig::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let again = RunConfig::parse(&cfg.to_toml_string(), &name).unwrap();
        assert_eq!(cfg, again, "{name}");
        n += 1;
    }
    assert!(
        n >= 7,
        "expected the reproduction configs and smoke.toml, found {n}"
    );
}
