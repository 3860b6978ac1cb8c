//! Configuration: parsing, errors with line/column/key, `${VAR}`, sharing of
//! handles, the registry of backend types.

use runstore::{
    Backend, BackendConfig, BackendFactory, BackendRegistry, Config, ErrorKind, Storage,
};

const MEMORY: &str = "storage:\n  workflows: { type: memory }\n  logs: { type: memory }\n  metrics: { type: memory }\n  artifacts: { type: memory }\n";

fn message(yaml: &str) -> String {
    let err = Config::from_yaml_str(yaml).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    err.to_string()
}

/// An environment variable that is set here, with a name and value usable
/// in the tests (no `$` in the value). Setting one is `unsafe` in edition
/// 2024, so the tests read one the test runner already has.
fn some_env_var() -> (String, String) {
    std::env::vars()
        .find(|(k, v)| {
            !v.is_empty()
                && !v.contains(['$', '"', '\\', '\n'])
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !k.starts_with(|c: char| c.is_ascii_digit())
        })
        .expect("at least one ordinary environment variable")
}

#[test]
fn memory_config_parses_and_opens() {
    let config = Config::from_yaml_str(MEMORY).unwrap();
    assert_eq!(config.logs.type_name, "memory");
    assert_eq!(config.source, "YAML string");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let storage = rt.block_on(Storage::from_yaml_str(MEMORY)).unwrap();
    // No share key for memory: one backend per concern.
    assert_eq!(storage.backends().len(), 4);
    assert!(matches!(
        runstore::Builtin::of(&storage.backends()[0].backend.handle),
        runstore::Builtin::Memory
    ));
}

#[test]
fn unknown_type_lists_known_ones_with_line_column_and_key() {
    let yaml = "storage:\n  workflows: { type: memory }\n  logs: { type: sqlit, path: x.db }\n  metrics: { type: memory }\n  artifacts: { type: memory }\n";
    let m = message(yaml);
    assert!(m.contains("line 3 column 9"), "{m}");
    assert!(m.contains("storage.logs"), "{m}");
    assert!(m.contains("unknown type `sqlit`"), "{m}");
    assert!(m.contains("known types: "), "{m}");
    assert!(m.contains("memory"), "{m}");
    #[cfg(feature = "sqlite")]
    assert!(m.contains("sqlite"), "{m}");
}

#[test]
fn unknown_option_names_the_option_and_its_place() {
    let yaml = "storage:\n  workflows: { type: memory }\n  logs:\n    type: memory\n    paht: 3\n  metrics: { type: memory }\n  artifacts: { type: memory }\n";
    let m = message(yaml);
    assert!(m.contains("line 4 column 5"), "{m}");
    assert!(m.contains("storage.logs"), "{m}");
    assert!(m.contains("paht"), "{m}");
}

#[test]
fn unknown_concern_and_missing_concern_are_named() {
    let m = message("storage:\n  workflows: { type: memory }\n  logz: { type: memory }\n");
    assert!(m.contains("line 3 column 3"), "{m}");
    assert!(m.contains("logz"), "{m}");
    assert!(m.contains("`logs`"), "{m}");
    let m = message("storage:\n  workflows: { type: memory }\n");
    assert!(m.contains("missing field `logs`"), "{m}");
    let m = message("stroage: {}\n");
    assert!(m.contains("stroage"), "{m}");
    let m = message("storage:\n  workflows: { path: x }\n  logs: { type: memory }\n");
    assert!(m.contains("storage.workflows"), "{m}");
    assert!(m.contains("missing option `type`"), "{m}");
}

#[test]
fn syntax_error_has_line_and_column() {
    let m = message("storage:\n  workflows: { type: memory\n  logs: [\n");
    assert!(m.contains("YAML string line "), "{m}");
    assert!(m.contains(" column "), "{m}");
    // The location is given once, in our form.
    assert_eq!(m.matches("line ").count(), 1, "{m}");
}

#[test]
fn file_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "storage:\n  workflows: { type: nope }\n").unwrap();
    let err = Config::from_file(&path).unwrap_err();
    let m = err.to_string();
    assert!(m.contains(&path.display().to_string()), "{m}");
    assert!(m.contains("line 2 column 14"), "{m}");
    assert!(m.contains("storage.workflows"), "{m}");
    let err = Config::from_file(dir.path().join("absent.yaml")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("absent.yaml"), "{err}");
}

#[test]
fn env_vars_are_expanded_and_a_missing_one_is_named() {
    let (name, value) = some_env_var();
    let yaml = format!(
        "storage:\n  workflows: {{ type: memory }}\n  logs: {{ type: memory }}\n  metrics: {{ type: memory }}\n  artifacts: {{ type: custom-env-echo, note: \"x-${{{name}}}-$${{LITERAL}}\" }}\n"
    );
    let mut registry = BackendRegistry::with_builtins();
    registry.register("custom-env-echo", MemoryBacked).unwrap();
    let config = Config::parse(&yaml, "test", ".".into(), &registry).unwrap();
    assert_eq!(
        config.artifacts.str_option("note").unwrap(),
        format!("x-{value}-${{LITERAL}}")
    );

    let missing = "RUNSTORE_TEST_SURELY_UNSET_VARIABLE_42";
    assert!(std::env::var(missing).is_err());
    let yaml = format!(
        "storage:\n  workflows: {{ type: memory }}\n  logs:\n    type: custom-env-echo\n    note: \"${{{missing}}}\"\n  metrics: {{ type: memory }}\n  artifacts: {{ type: memory }}\n"
    );
    let err = Config::parse(&yaml, "test", ".".into(), &registry).unwrap_err();
    let m = err.to_string();
    assert!(m.contains(missing), "{m}");
    assert!(m.contains("not set"), "{m}");
    assert!(m.contains("storage.logs"), "{m}");
    assert!(m.contains("line 4"), "{m}");
}

#[cfg(not(feature = "postgres"))]
#[test]
fn a_type_whose_feature_is_off_names_the_feature() {
    let m = message("storage:\n  workflows: { type: postgres, url: \"postgres://x@y/z\" }\n");
    assert!(m.contains("feature `postgres`"), "{m}");
    assert!(m.contains("storage.workflows"), "{m}");
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_options_are_checked_and_urls_redacted() {
    let m = message(
        "storage:\n  workflows: { type: memory }\n  logs: { type: postgres, url: \"postgres://app:s3cret@db/x\", pool_sise: 3 }\n  metrics: { type: memory }\n  artifacts: { type: memory }\n",
    );
    assert!(m.contains("pool_sise"), "{m}");
    assert!(!m.contains("s3cret"), "{m}");
    let config = Config::from_yaml_str(
        "storage:\n  workflows: { type: memory }\n  logs: { type: postgres, url: \"postgres://app:s3cret@db/x\", connect_timeout: 500ms }\n  metrics: { type: memory }\n  artifacts: { type: memory }\n",
    )
    .unwrap();
    let shown = format!("{config:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("app:***@db"), "{shown}");
    let m = message(
        "storage:\n  workflows: { type: memory }\n  logs: { type: postgres, url: x, operation_timeout: soon }\n  metrics: { type: memory }\n  artifacts: { type: memory }\n",
    );
    assert!(m.contains("operation_timeout"), "{m}");
}

#[test]
fn default_config_is_files_and_sqlite_under_runstore_data() {
    let c = Config::default();
    assert_eq!(c.workflows.type_name, "file");
    assert_eq!(c.logs.type_name, "sqlite");
    assert_eq!(c.metrics.type_name, "sqlite");
    assert_eq!(c.artifacts.type_name, "file");
    assert_eq!(
        c.logs.str_option("path"),
        Some("./runstore-data/runstore.db")
    );
    assert_eq!(c.artifacts.str_option("path"), Some("./runstore-data"));
    // The embedded text says the same thing.
    #[cfg(all(feature = "file", feature = "sqlite"))]
    {
        let parsed = Config::from_yaml_str(runstore::DEFAULT_YAML).unwrap();
        for concern in runstore::Concern::ALL {
            assert_eq!(
                parsed.backend(concern).type_name,
                c.backend(concern).type_name
            );
            assert_eq!(parsed.backend(concern).options, c.backend(concern).options);
        }
    }
}

/// A registered type backed by the memory store, counting opens.
struct MemoryBacked;

#[runstore::async_trait]
impl BackendFactory for MemoryBacked {
    fn validate(&self, config: &BackendConfig) -> Result<(), String> {
        match config.options.get("fail") {
            Some(_) => Err("option `fail` is not allowed".into()),
            None => Ok(()),
        }
    }

    fn share_key(&self, config: &BackendConfig) -> runstore::Result<Option<String>> {
        Ok(config.str_option("name").map(str::to_string))
    }

    async fn open(&self, config: &BackendConfig) -> runstore::Result<Backend> {
        let name = config.str_option("name").unwrap_or("").to_string();
        let offers_artifacts = name != "no-artifacts";
        let mut backend = Backend::from_store_set(runstore::memory::store_set(), name);
        if !offers_artifacts {
            // Offers no artifact store, to test that it is reported.
            backend.artifacts = None;
        }
        Ok(backend)
    }
}

#[test]
fn registered_type_is_chosen_from_yaml_and_shares_by_key() {
    runstore::register_backend("test-mem", MemoryBacked).unwrap();
    let yaml = "storage:\n  workflows: { type: test-mem, name: a }\n  logs: { type: test-mem, name: a }\n  metrics: { type: test-mem, name: b }\n  artifacts: { type: memory }\n";
    let rt = tokio::runtime::Runtime::new().unwrap();
    let storage = rt.block_on(Storage::from_yaml_str(yaml)).unwrap();
    let backends = storage.backends();
    assert_eq!(backends.len(), 3, "{backends:?}");
    assert_eq!(backends[0].type_name, "test-mem");
    assert_eq!(
        backends[0].concerns,
        vec![runstore::Concern::Workflows, runstore::Concern::Logs]
    );
    let handle = &backends[0].backend.handle;
    assert_eq!(
        handle.downcast_ref::<String>().map(String::as_str),
        Some("a"),
        "{handle:?}"
    );
    assert!(matches!(
        runstore::Builtin::of(handle),
        runstore::Builtin::Other(_)
    ));

    // Its validate() runs at parse time, with the place of the mapping.
    let m = message("storage:\n  workflows: { type: test-mem, fail: 1 }\n");
    assert!(m.contains("line 2 column 14"), "{m}");
    assert!(m.contains("option `fail` is not allowed"), "{m}");

    // A backend that does not offer a concern is refused, naming it.
    let yaml = "storage:\n  workflows: { type: memory }\n  logs: { type: memory }\n  metrics: { type: memory }\n  artifacts: { type: test-mem, name: no-artifacts }\n";
    let err = rt.block_on(Storage::from_yaml_str(yaml)).unwrap_err();
    assert!(
        err.to_string().contains("does not store artifacts"),
        "{err}"
    );
    assert!(err.to_string().contains("storage.artifacts"), "{err}");
}

#[test]
fn registry_refuses_builtin_and_bad_names() {
    let mut r = BackendRegistry::with_builtins();
    assert_eq!(
        r.register("memory", MemoryBacked).unwrap_err().kind(),
        ErrorKind::Conflict
    );
    assert_eq!(
        r.register("sqlite", MemoryBacked).unwrap_err().kind(),
        ErrorKind::Conflict
    );
    assert_eq!(
        r.register("Bad Name", MemoryBacked).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        r.register("", MemoryBacked).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    r.register("ok-name_2", MemoryBacked).unwrap();
    assert!(r.known_types().contains(&"ok-name_2".to_string()));
    // A type unknown to this registry but not built in.
    let err = match r.factory("zzz") {
        Err(e) => e,
        Ok(_) => panic!("zzz is not registered"),
    };
    assert!(err.contains("ok-name_2"), "{err}");
}

#[cfg(all(feature = "sqlite", feature = "file"))]
#[test]
fn same_sqlite_file_under_two_spellings_shares_one_handle() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("sub")).unwrap();
    let config = dir.path().join("runstore.yaml");
    std::fs::write(
        &config,
        "storage:\n  workflows: { type: file, path: data }\n  logs: { type: sqlite, path: ./db/x.db }\n  metrics: { type: sqlite, path: sub/../db/x.db }\n  artifacts: { type: file, path: ./data/ }\n",
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let storage = rt.block_on(Storage::open_file(&config)).unwrap();
    let b = storage.backends();
    assert_eq!(b.len(), 2, "{b:?}");
    assert_eq!(b[0].type_name, "file");
    assert_eq!(
        b[0].concerns,
        vec![runstore::Concern::Workflows, runstore::Concern::Artifacts]
    );
    assert_eq!(b[1].type_name, "sqlite");
    assert_eq!(
        b[1].concerns,
        vec![runstore::Concern::Logs, runstore::Concern::Metrics]
    );
    // Paths were resolved against the folder of the file.
    assert!(dir.path().join("db/x.db").exists());
    assert!(dir.path().join("data").is_dir());
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite_options_are_checked() {
    let m =
        message("storage:\n  workflows: { type: sqlite, path: x.db, synchronous: sometimes }\n");
    assert!(m.contains("synchronous"), "{m}");
    assert!(m.contains("storage.workflows"), "{m}");
    let m = message("storage:\n  workflows: { type: sqlite }\n");
    assert!(m.contains("path"), "{m}");
}

#[test]
fn redact_and_expand_helpers() {
    use runstore::config::{expand_env, redact_url};
    assert_eq!(
        redact_url("postgres://u:p@h:5432/d?x=1"),
        "postgres://u:***@h:5432/d?x=1"
    );
    assert_eq!(redact_url("postgres://u@h/d"), "postgres://u@h/d");
    assert_eq!(expand_env("no vars").unwrap(), "no vars");
    assert_eq!(expand_env("$${X}").unwrap(), "${X}");
    assert!(
        expand_env("${unterminated")
            .unwrap_err()
            .contains("unterminated")
    );
    assert!(expand_env("${1BAD}").unwrap_err().contains("not a valid"));
    let (name, value) = some_env_var();
    assert_eq!(
        expand_env(&format!("a${{{name}}}b")).unwrap(),
        format!("a{value}b")
    );
}
