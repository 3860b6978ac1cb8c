//! TLS per `sslmode`, against a throwaway cluster with certificates made
//! by the `openssl` command: encryption only for `require`, the chain for
//! `verify-ca`, chain and host name for `verify-full`.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use runstore_core::{ErrorKind, LogRepository, Run, Version, WorkflowId};
use runstore_postgres::testing::{self, Cluster};
use runstore_postgres::{PostgresConfig, PostgresStore};

fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .map_err(|e| format!("running openssl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A CA, a server certificate for `localhost` signed by it, and an
/// unrelated CA.
fn make_certs(dir: &Path) -> Result<(), String> {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for (ca, cn) in [("ca", "runstore-test-ca"), ("other-ca", "someone-else")] {
        let (key, crt, subj) = (
            format!("{ca}.key"),
            format!("{ca}.crt"),
            format!("/CN={cn}"),
        );
        let mut args = vec![
            "req", "-x509", "-days", "2", "-subj", &subj, "-keyout", &key, "-out", &crt,
        ];
        args.extend(ec);
        openssl(dir, &args)?;
    }
    let mut args = vec![
        "req",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ];
    args.extend(ec);
    openssl(dir, &args)?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .map_err(|e| e.to_string())?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    )?;
    let mut perms = std::fs::metadata(dir.join("server.key"))
        .map_err(|e| e.to_string())?
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    std::fs::set_permissions(dir.join("server.key"), perms).map_err(|e| e.to_string())
}

/// How many of the store's sessions (application_name runstore) use TLS,
/// and how many do not.
async fn sessions(admin: &tokio_postgres::Client) -> (i64, i64) {
    let row = admin
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl)
             FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'runstore'",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmodes_encrypt_and_verify_as_libpq() {
    let cluster = match tokio::task::spawn_blocking(Cluster::start_new)
        .await
        .unwrap()
    {
        Ok(c) => Arc::new(c),
        Err(e) => {
            testing::no_server("tls::sslmodes", &format!("no throwaway cluster: {e}"));
            return;
        }
    };
    let dir = cluster.dir().to_path_buf();
    if let Err(e) = make_certs(&dir) {
        testing::no_server(
            "tls::sslmodes",
            &format!("cannot make test certificates: {e}"),
        );
        return;
    }
    cluster
        .configure(&format!(
            "ssl = on\nssl_cert_file = '{0}/server.crt'\nssl_key_file = '{0}/server.key'",
            dir.display()
        ))
        .unwrap();
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || {
        c.stop()?;
        c.start()
    })
    .await
    .unwrap()
    .unwrap();
    let port = cluster
        .url()
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let admin = testing::raw_client(&format!("{}?application_name=admin", cluster.url()))
        .await
        .unwrap();
    let ca = dir.join("ca.crt").display().to_string();
    let other = dir.join("other-ca.crt").display().to_string();

    let try_mode = |host: &str, params: String, schema: &str| {
        PostgresConfig::new(format!(
            "postgres://postgres:sekret@{host}:{port}/postgres?{params}"
        ))
        .with_schema(schema)
    };
    // Encryption only: any certificate is accepted, the session is TLS.
    for (i, (host, params)) in [
        ("127.0.0.1", "sslmode=require".to_string()),
        ("127.0.0.1", "sslmode=prefer".to_string()),
        ("localhost", format!("sslmode=verify-full&sslrootcert={ca}")),
        // verify-ca checks the chain but not the name (the cert says localhost).
        ("127.0.0.1", format!("sslmode=verify-ca&sslrootcert={ca}")),
    ]
    .into_iter()
    .enumerate()
    {
        let store = PostgresStore::open(try_mode(host, params.clone(), &format!("tls{i}")))
            .await
            .unwrap_or_else(|e| panic!("{host} {params}: {e}"));
        store
            .create_run(Run::new(WorkflowId::new("tls").unwrap(), Version::FIRST))
            .await
            .unwrap();
        let (tls, plain) = sessions(&admin).await;
        assert!(
            tls >= 1 && plain == 0,
            "{host} {params}: {tls} TLS, {plain} plain sessions"
        );
        drop(store);
        // Let the dropped pool's sessions end before the next mode counts.
        for _ in 0..50 {
            if sessions(&admin).await == (0, 0) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    // disable: no TLS.
    let store = PostgresStore::open(try_mode("127.0.0.1", "sslmode=disable".into(), "plain"))
        .await
        .unwrap();
    store
        .get_run(&runstore_core::RunId::new("absent").unwrap())
        .await
        .unwrap_err();
    let (tls, plain) = sessions(&admin).await;
    assert!(
        tls == 0 && plain >= 1,
        "disable: {tls} TLS, {plain} plain sessions"
    );
    drop(store);

    // Refused: the wrong CA, or the right CA with the wrong name.
    for (host, params) in [
        (
            "localhost",
            format!("sslmode=verify-full&sslrootcert={other}"),
        ),
        ("127.0.0.1", format!("sslmode=verify-full&sslrootcert={ca}")),
        (
            "localhost",
            format!("sslmode=verify-ca&sslrootcert={other}"),
        ),
    ] {
        let err = PostgresStore::open(
            try_mode(host, params.clone(), "refused")
                .with_connect_timeout(std::time::Duration::from_secs(3)),
        )
        .await
        .unwrap_err();
        let source = std::error::Error::source(&err)
            .map(|s| s.to_string())
            .unwrap_or_default();
        eprintln!("refused as expected: {err}: {source}");
        assert_eq!(err.kind(), ErrorKind::Backend, "{host} {params}: {err}");
        assert!(!format!("{err} {err:?}").contains("sekret"));
    }
}
