//! The admin kubeconfig, shaped like the one K3s writes to `/etc/rancher/k3s/k3s.yaml`.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::Serialize;

use crate::atomic_file::{ensure_dir, write_atomic};
use crate::cluster::ClusterPki;
use crate::error::{Error, Result};

/// The name of the one cluster, user and context, as in K3s.
const NAME: &str = "default";

/// Fields in the order K3s (Go's YAML encoder, alphabetical) writes them.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Kubeconfig<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    clusters: Vec<Named<'a, Cluster<'a>>>,
    contexts: Vec<Named<'a, Context<'a>>>,
    current_context: &'a str,
    kind: &'a str,
    preferences: Preferences,
    users: Vec<Named<'a, User>>,
}

#[derive(Serialize)]
struct Named<'a, T> {
    name: &'a str,
    #[serde(flatten)]
    item: T,
}

#[derive(Serialize)]
struct Cluster<'a> {
    cluster: ClusterEntry<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct ClusterEntry<'a> {
    certificate_authority_data: String,
    server: &'a str,
}

#[derive(Serialize)]
struct Context<'a> {
    context: ContextEntry<'a>,
}

#[derive(Serialize)]
struct ContextEntry<'a> {
    cluster: &'a str,
    user: &'a str,
}

#[derive(Serialize)]
struct User {
    user: UserEntry,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct UserEntry {
    client_certificate_data: String,
    client_key_data: String,
}

#[derive(Serialize)]
struct Preferences {}

/// A kubeconfig for the cluster admin: cluster, user and context all named `default`,
/// the server CA and the admin certificate and key embedded as base64 PEM.
pub fn kubeconfig_yaml(server_url: &str, pki: &ClusterPki) -> Result<String> {
    let config = Kubeconfig {
        api_version: "v1",
        clusters: vec![Named {
            name: NAME,
            item: Cluster {
                cluster: ClusterEntry {
                    certificate_authority_data: BASE64.encode(&pki.server_ca_cert_pem),
                    server: server_url,
                },
            },
        }],
        contexts: vec![Named {
            name: NAME,
            item: Context {
                context: ContextEntry {
                    cluster: NAME,
                    user: NAME,
                },
            },
        }],
        current_context: NAME,
        kind: "Config",
        preferences: Preferences {},
        users: vec![Named {
            name: NAME,
            item: User {
                user: UserEntry {
                    client_certificate_data: BASE64.encode(&pki.admin_cert_pem),
                    client_key_data: BASE64.encode(&pki.admin_key_pem),
                },
            },
        }],
    };
    serde_yaml::to_string(&config).map_err(Error::Kubeconfig)
}

/// Writes [`kubeconfig_yaml`] to `path` atomically with exactly `mode` (K3s's
/// `--write-kubeconfig-mode`), creating missing parent directories.
pub fn write_kubeconfig(path: &Path, mode: u32, server_url: &str, pki: &ClusterPki) -> Result<()> {
    let yaml = kubeconfig_yaml(server_url, pki)?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        ensure_dir(parent, None)?;
    }
    write_atomic(path, yaml.as_bytes(), mode)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use serde_yaml::Value;

    use super::*;
    use crate::ensure_pki;

    fn decode(v: &Value) -> String {
        String::from_utf8(BASE64.decode(v.as_str().unwrap()).unwrap()).unwrap()
    }

    fn check(yaml: &str, server: &str, pki: &ClusterPki) {
        let doc: Value = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(doc["apiVersion"], "v1");
        assert_eq!(doc["kind"], "Config");
        assert_eq!(doc["current-context"], "default");

        let cluster = &doc["clusters"][0];
        assert_eq!(cluster["name"], "default");
        assert_eq!(cluster["cluster"]["server"], server);
        assert_eq!(
            decode(&cluster["cluster"]["certificate-authority-data"]),
            pki.server_ca_cert_pem
        );

        let context = &doc["contexts"][0];
        assert_eq!(context["name"], "default");
        assert_eq!(context["context"]["cluster"], "default");
        assert_eq!(context["context"]["user"], "default");

        let user = &doc["users"][0];
        assert_eq!(user["name"], "default");
        assert_eq!(
            decode(&user["user"]["client-certificate-data"]),
            pki.admin_cert_pem
        );
        assert_eq!(decode(&user["user"]["client-key-data"]), pki.admin_key_pem);
    }

    #[test]
    fn kubeconfig_parses_back_with_the_right_fields() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = ensure_pki(tmp.path(), &[]).unwrap();
        let yaml = kubeconfig_yaml("https://127.0.0.1:6443", &pki).unwrap();
        check(&yaml, "https://127.0.0.1:6443", &pki);
    }

    #[test]
    fn write_kubeconfig_creates_parents_and_sets_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = ensure_pki(&tmp.path().join("tls"), &[]).unwrap();
        let path = tmp.path().join("etc").join("kedge").join("kedge.yaml");

        write_kubeconfig(&path, 0o600, "https://10.0.0.1:6443", &pki).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        check(
            &std::fs::read_to_string(&path).unwrap(),
            "https://10.0.0.1:6443",
            &pki,
        );

        // Rewriting replaces the file and applies the new mode.
        write_kubeconfig(&path, 0o644, "https://10.0.0.2:6443", &pki).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        check(
            &std::fs::read_to_string(&path).unwrap(),
            "https://10.0.0.2:6443",
            &pki,
        );
    }
}
