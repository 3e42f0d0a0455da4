//! Connection settings: flag, then `DATABASE_URL`, then libpq's `PG*` variables; TLS as libpq's
//! `sslmode` says. The password never appears in anything this module prints.

use anyhow::{bail, Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use tokio_postgres::config::{Host, SslMode as PgSslMode};
use tokio_postgres::{Client, Config, NoTls};

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => bail!(
                "unknown sslmode `{other}` (expected disable, allow, prefer, require, verify-ca or verify-full)"
            ),
        })
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Disable => "disable",
            Self::Allow => "allow",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        })
    }
}

/// Where the connection settings came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingsSource {
    Flag,
    DatabaseUrl,
    PgEnvironment,
}

impl fmt::Display for SettingsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Flag => "--database-url",
            Self::DatabaseUrl => "DATABASE_URL",
            Self::PgEnvironment => "PG* environment variables",
        })
    }
}

/// Resolved connection settings. `Debug` and `Display` mask the password.
#[derive(Clone)]
pub struct ConnInfo {
    config: Config,
    pub sslmode: SslMode,
    pub sslrootcert: Option<String>,
    pub source: SettingsSource,
}

impl ConnInfo {
    /// Flag, then `DATABASE_URL`, then `PGHOST`/`PGPORT`/`PGUSER`/`PGPASSWORD`/`PGDATABASE`/`PGSSLMODE`.
    pub fn resolve(flag: Option<&str>) -> Result<Self> {
        Self::resolve_with(flag, |k| std::env::var(k).ok())
    }

    /// [`ConnInfo::resolve`] with an explicit environment, for tests.
    pub fn resolve_with(flag: Option<&str>, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        if let Some(url) = flag.filter(|s| !s.trim().is_empty()) {
            return Self::parse(url, SettingsSource::Flag, &env);
        }
        if let Some(url) = nonempty(env("DATABASE_URL")) {
            return Self::parse(&url, SettingsSource::DatabaseUrl, &env);
        }
        let mut config = Config::new();
        let host = nonempty(env("PGHOST"));
        if host.is_none()
            && nonempty(env("PGDATABASE")).is_none()
            && nonempty(env("PGUSER")).is_none()
        {
            bail!("no database given: pass --database-url, set DATABASE_URL, or set libpq's PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE (for a throwaway local database: `cleanmig dev-db start`)");
        }
        for h in host.as_deref().unwrap_or("localhost").split(',') {
            config.host(h);
        }
        if let Some(port) = nonempty(env("PGPORT")) {
            for p in port.split(',') {
                let p: u16 = p
                    .trim()
                    .parse()
                    .with_context(|| format!("PGPORT `{p}` is not a port number"))?;
                config.port(p);
            }
        }
        let user = nonempty(env("PGUSER"))
            .or_else(|| nonempty(env("USER")))
            .unwrap_or_else(|| "postgres".into());
        config.user(&user);
        if let Some(pw) = env("PGPASSWORD") {
            config.password(pw);
        }
        config.dbname(nonempty(env("PGDATABASE")).unwrap_or(user));
        let sslmode = match nonempty(env("PGSSLMODE")) {
            Some(m) => m.parse().context("PGSSLMODE")?,
            None => SslMode::Prefer,
        };
        let mut info = Self {
            config,
            sslmode,
            sslrootcert: nonempty(env("PGSSLROOTCERT")),
            source: SettingsSource::PgEnvironment,
        };
        info.finish();
        Ok(info)
    }

    fn parse(
        url: &str,
        source: SettingsSource,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let (rest, params) = take_params(url, &["sslmode", "sslrootcert"]);
        let mut config = Config::from_str(&rest)
            .map_err(|e| anyhow::anyhow!("{source} is not a valid connection string: {e}"))?;
        if config.get_password().is_none() {
            if let Some(pw) = env("PGPASSWORD") {
                config.password(pw);
            }
        }
        let sslmode = match params.iter().find(|(k, _)| k == "sslmode") {
            Some((_, v)) => v.parse().with_context(|| format!("sslmode in {source}"))?,
            None => match env("PGSSLMODE").filter(|s| !s.is_empty()) {
                Some(m) => m.parse().context("PGSSLMODE")?,
                None => SslMode::Prefer,
            },
        };
        let sslrootcert = params
            .iter()
            .find(|(k, _)| k == "sslrootcert")
            .map(|(_, v)| v.clone())
            .or_else(|| env("PGSSLROOTCERT"));
        let mut info = Self {
            config,
            sslmode,
            sslrootcert,
            source,
        };
        info.finish();
        Ok(info)
    }

    fn finish(&mut self) {
        self.config.application_name("cleanmig");
        self.config.ssl_mode(match self.sslmode {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Allow | SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgSslMode::Require,
        });
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The user name the connection logs in as.
    pub fn user(&self) -> &str {
        self.config.get_user().unwrap_or("")
    }

    /// Connect and drive the connection on the runtime; errors name the masked target.
    pub async fn connect(&self) -> Result<Client> {
        let what = || format!("cannot connect to {self} (settings from {})", self.source);
        match self.sslmode {
            SslMode::Disable => {
                let (client, conn) = self.config.connect(NoTls).await.with_context(what)?;
                spawn_connection(conn);
                Ok(client)
            }
            mode => {
                let tls = tls_connector(mode, self.sslrootcert.as_deref())?;
                let (client, conn) = self.config.connect(tls).await.with_context(what)?;
                spawn_connection(conn);
                Ok(client)
            }
        }
    }
}

fn spawn_connection<S, T>(conn: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("connection closed: {e}");
        }
    });
}

/// Split `key=value` parameters that tokio-postgres does not understand out of a URL or a
/// key/value connection string.
fn take_params(conn: &str, keys: &[&str]) -> (String, Vec<(String, String)>) {
    let mut taken = Vec::new();
    if conn.starts_with("postgres://") || conn.starts_with("postgresql://") {
        let Some((base, query)) = conn.split_once('?') else {
            return (conn.to_string(), taken);
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if keys.contains(&k) {
                taken.push((k.to_string(), percent_decode(v)));
            } else {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        (rest, taken)
    } else {
        let mut kept = Vec::new();
        for word in conn.split_whitespace() {
            match word.split_once('=') {
                Some((k, v)) if keys.contains(&k.trim()) => {
                    taken.push((k.trim().to_string(), v.trim_matches('\'').to_string()))
                }
                _ => kept.push(word),
            }
        }
        (kept.join(" "), taken)
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl fmt::Display for ConnInfo {
    /// `postgresql://user:***@host:port/db?sslmode=require`: never the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        write!(f, "postgresql://")?;
        if let Some(user) = c.get_user() {
            write!(f, "{user}")?;
            if c.get_password().is_some() {
                write!(f, ":***")?;
            }
            write!(f, "@")?;
        }
        let ports = c.get_ports();
        let hosts: Vec<String> = c
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let host = match h {
                    Host::Tcp(name) => name.clone(),
                    Host::Unix(path) => path.display().to_string(),
                };
                match ports.get(i).or(ports.first()) {
                    Some(p) => format!("{host}:{p}"),
                    None => host,
                }
            })
            .collect();
        write!(f, "{}", hosts.join(","))?;
        write!(f, "/{}", c.get_dbname().unwrap_or(""))?;
        write!(f, "?sslmode={}", self.sslmode)
    }
}

impl fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnInfo({self}, from {})", self.source)
    }
}

fn tls_connector(
    mode: SslMode,
    rootcert: Option<&str>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS setup")?;
    let config = match mode {
        // libpq: encrypt, but verify nothing unless asked to.
        SslMode::Allow | SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth(),
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            if let Some(path) = rootcert {
                for cert in CertificateDer::pem_file_iter(path)
                    .with_context(|| format!("cannot read sslrootcert {path}"))?
                {
                    let cert = cert.with_context(|| format!("bad certificate in {path}"))?;
                    roots
                        .add(cert)
                        .with_context(|| format!("bad certificate in {path}"))?;
                }
            }
            let roots = Arc::new(roots);
            if mode == SslMode::VerifyFull {
                builder.with_root_certificates(roots).with_no_client_auth()
            } else {
                let inner =
                    rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
                        .build()
                        .context("TLS verifier")?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly(inner)))
                    .with_no_client_auth()
            }
        }
        SslMode::Disable => unreachable!("no TLS for sslmode=disable"),
    };
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// `sslmode=require`: encrypted, certificate not checked (libpq's behaviour).
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain must lead to a trusted root; the host name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn flag_wins_over_database_url_and_password_is_masked() {
        let info = ConnInfo::resolve_with(
            Some("postgresql://app:s3cret@db.example.com:6543/postgres?sslmode=require"),
            env(&[("DATABASE_URL", "postgresql://other@h/d")]),
        )
        .unwrap();
        assert_eq!(info.source, SettingsSource::Flag);
        assert_eq!(info.sslmode, SslMode::Require);
        let shown = format!("{info} {info:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert_eq!(
            info.to_string(),
            "postgresql://app:***@db.example.com:6543/postgres?sslmode=require"
        );
    }

    #[test]
    fn verify_full_is_understood_although_tokio_postgres_does_not_know_it() {
        let info = ConnInfo::resolve_with(
            None,
            env(&[(
                "DATABASE_URL",
                "postgres://u:p@h/db?sslmode=verify-full&connect_timeout=5",
            )]),
        )
        .unwrap();
        assert_eq!(info.source, SettingsSource::DatabaseUrl);
        assert_eq!(info.sslmode, SslMode::VerifyFull);
        assert_eq!(
            info.config().get_connect_timeout(),
            Some(&std::time::Duration::from_secs(5))
        );
    }

    #[test]
    fn pg_variables_are_the_fallback() {
        let info = ConnInfo::resolve_with(
            None,
            env(&[
                ("PGHOST", "10.0.0.5"),
                ("PGPORT", "5433"),
                ("PGUSER", "migrator"),
                ("PGPASSWORD", "hunter2"),
                ("PGDATABASE", "prod"),
                ("PGSSLMODE", "disable"),
            ]),
        )
        .unwrap();
        assert_eq!(info.source, SettingsSource::PgEnvironment);
        assert_eq!(
            info.to_string(),
            "postgresql://migrator:***@10.0.0.5:5433/prod?sslmode=disable"
        );
    }

    #[test]
    fn default_sslmode_is_prefer_like_libpq() {
        let info = ConnInfo::resolve_with(Some("host=h user=u dbname=d"), env(&[])).unwrap();
        assert_eq!(info.sslmode, SslMode::Prefer);
    }

    #[test]
    fn nothing_given_says_what_to_do() {
        let err = ConnInfo::resolve_with(None, env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--database-url"), "{err}");
        assert!(err.contains("DATABASE_URL"), "{err}");
    }

    #[test]
    fn bad_sslmode_is_named() {
        let err =
            ConnInfo::resolve_with(Some("postgres://h/d?sslmode=maybe"), env(&[])).unwrap_err();
        assert!(format!("{err:#}").contains("unknown sslmode `maybe`"));
    }
}
