//! Test certificates made with the `openssl` command (test.sh installs it): a CA, a server certificate
//! for 127.0.0.1 and localhost, and a client certificate, all issued by that CA; and a second, unrelated
//! CA with a client certificate of its own. Also used by `net::tls`'s unit tests (through `#[path]`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The PEM files under one directory.
pub struct Certs {
    /// The CA that issued the server and client certificates.
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A CA nobody here trusts, and a client certificate it issued.
    pub other_ca: PathBuf,
    pub other_client_cert: PathBuf,
    pub other_client_key: PathBuf,
    /// A self-signed server certificate for 127.0.0.1 (pinned by giving it as the client's `--ca`).
    pub self_signed_cert: PathBuf,
    pub self_signed_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out =
        Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl (install it: test.sh does)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn new_ca(dir: &Path, name: &str) {
    let (key, pem, subj) = (format!("{name}.key"), format!("{name}.pem"), format!("/CN=mover test {name}"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &pem,
            "-days",
            "3650",
            "-subj",
            &subj,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

fn issue(dir: &Path, ca: &str, name: &str, cn: &str, ext: &str) {
    let (key, csr, pem, extf) =
        (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"), format!("{name}.ext"));
    std::fs::write(dir.join(&extf), ext).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={cn}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "3650",
            "-extfile",
            &extf,
        ],
    );
}

/// Makes every file under `dir` (which must exist).
pub fn make(dir: &Path) -> Certs {
    new_ca(dir, "ca");
    new_ca(dir, "other-ca");
    let server_ext =
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n";
    let client_ext = "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n";
    issue(dir, "ca", "server", "localhost", server_ext);
    issue(dir, "ca", "client", "alice", client_ext);
    issue(dir, "other-ca", "other-client", "mallory", client_ext);
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "self-signed.key",
            "-out",
            "self-signed.pem",
            "-days",
            "3650",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
    );
    let p = |n: &str| dir.join(n);
    Certs {
        ca: p("ca.pem"),
        server_cert: p("server.pem"),
        server_key: p("server.key"),
        client_cert: p("client.pem"),
        client_key: p("client.key"),
        other_ca: p("other-ca.pem"),
        other_client_cert: p("other-client.pem"),
        other_client_key: p("other-client.key"),
        self_signed_cert: p("self-signed.pem"),
        self_signed_key: p("self-signed.key"),
    }
}
