//! Connection settings: flag, then `DATABASE_URL`, then libpq's `PG*` variables; TLS as libpq's
//! `sslmode` and `sslrootcert` say, and a log line on how each connection travels. The password never appears in anything this module prints.

use anyhow::{bail, Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::config::{Host, SslMode as PgSslMode};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
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

/// libpq's `sslrootcert`: which certificate authorities the client trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCerts {
    /// `sslrootcert=FILE` or `PGSSLROOTCERT=FILE`: the authorities in this PEM file, and no others.
    File(PathBuf),
    /// `sslrootcert=system`: the operating system's trust store; allows `verify-full` only.
    System,
    /// Not given: `~/.postgresql/root.crt` when that file exists, as in libpq.
    Default(Option<PathBuf>),
}

impl RootCerts {
    fn from_setting(value: Option<String>, env: &impl Fn(&str) -> Option<String>) -> Self {
        match value.filter(|s| !s.trim().is_empty()) {
            Some(v) if v == "system" => Self::System,
            Some(v) => Self::File(PathBuf::from(v)),
            None => Self::Default(
                env("HOME")
                    .filter(|h| !h.is_empty())
                    .map(|h| Path::new(&h).join(".postgresql/root.crt")),
            ),
        }
    }
}

impl fmt::Display for RootCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(p) | Self::Default(Some(p)) => write!(f, "{}", p.display()),
            Self::System => f.write_str("the system's trusted roots"),
            Self::Default(None) => f.write_str("~/.postgresql/root.crt"),
        }
    }
}

/// What the client checks of the server's certificate on a TLS connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertCheck {
    /// Encrypted, but any certificate is accepted (`prefer`, or `require` without root file).
    Nothing,
    /// The chain must lead to a trusted authority (`verify-ca`, or `require` with a root file).
    Chain,
    /// Chain and host name (`verify-full`).
    ChainAndHost,
}

/// Resolved connection settings. `Debug` and `Display` mask the password.
#[derive(Clone)]
pub struct ConnInfo {
    config: Config,
    pub sslmode: SslMode,
    pub roots: RootCerts,
    pub source: SettingsSource,
}

impl ConnInfo {
    /// Flag, then `DATABASE_URL`, then `PGHOST`/`PGPORT`/`PGUSER`/`PGPASSWORD`/`PGDATABASE`/
    /// `PGSSLMODE`/`PGSSLROOTCERT`.
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
            Some(m) => Some(m.parse().context("PGSSLMODE")?),
            None => None,
        };
        let roots = RootCerts::from_setting(env("PGSSLROOTCERT"), &env);
        Self::finish(config, sslmode, roots, SettingsSource::PgEnvironment)
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
            Some((_, v)) => Some(v.parse().with_context(|| format!("sslmode in {source}"))?),
            None => match env("PGSSLMODE").filter(|s| !s.is_empty()) {
                Some(m) => Some(m.parse().context("PGSSLMODE")?),
                None => None,
            },
        };
        let rootcert = params
            .iter()
            .find(|(k, _)| k == "sslrootcert")
            .map(|(_, v)| v.clone())
            .or_else(|| env("PGSSLROOTCERT"));
        let roots = RootCerts::from_setting(rootcert, env);
        Self::finish(config, sslmode, roots, source)
    }

    /// libpq's defaults and its one refusal: `sslrootcert=system` means `verify-full`.
    fn finish(
        mut config: Config,
        sslmode: Option<SslMode>,
        roots: RootCerts,
        source: SettingsSource,
    ) -> Result<Self> {
        let sslmode = match (sslmode, &roots) {
            (Some(mode), RootCerts::System) if mode != SslMode::VerifyFull => bail!(
                "sslmode={mode} may not be used with sslrootcert=system (settings from {source}): \
                 anyone can get a certificate from a public authority for a host name they control, \
                 so the system's roots are only safe with sslmode=verify-full (libpq refuses this too); \
                 use sslmode=verify-full, or sslrootcert=FILE with the server's own CA certificate"
            ),
            (Some(mode), _) => mode,
            (None, RootCerts::System) => SslMode::VerifyFull,
            (None, _) => SslMode::Prefer,
        };
        config.application_name("cleanmig");
        config.ssl_mode(match sslmode {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Allow | SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgSslMode::Require,
        });
        Ok(Self {
            config,
            sslmode,
            roots,
            source,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The user name the connection logs in as.
    pub fn user(&self) -> &str {
        self.config.get_user().unwrap_or("")
    }

    /// Connect and drive the connection on the runtime; errors name the masked target. Logs
    /// whether the connection is encrypted (see [`ConnInfo::log_transport`]).
    pub async fn connect(&self) -> Result<Client> {
        let what = || format!("cannot connect to {self} (settings from {})", self.source);
        if self.sslmode == SslMode::Disable {
            let (client, conn) = self.config.connect(NoTls).await.with_context(what)?;
            spawn_connection(conn);
            self.log_transport(None, CertCheck::Nothing);
            return Ok(client);
        }
        let (check, roots) = self
            .certificate_check()
            .with_context(|| format!("cannot connect to {self}"))?;
        let tls = Tls::new(tls_config(check, roots)?);
        let (client, conn) = match self.config.connect(tls.clone()).await {
            Ok(connected) => connected,
            Err(e) if check != CertCheck::Nothing && is_certificate_error(&e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "{}: the server's certificate was refused (checked against {}{}); \
                     check that sslrootcert names the CA that signed it (Supabase: prod-ca-2021.crt \
                     from the project's database settings)",
                    what(),
                    self.roots,
                    if check == CertCheck::ChainAndHost {
                        ", with the host name"
                    } else {
                        ""
                    }
                )))
            }
            Err(e) => return Err(e).with_context(what),
        };
        spawn_connection(conn);
        let negotiated = tls.negotiated();
        self.log_transport(negotiated.as_ref(), check);
        Ok(client)
    }

    /// What `sslmode` and `sslrootcert` ask of the server's certificate, and the authorities
    /// to check it against, as libpq decides it.
    pub fn certificate_check(&self) -> Result<(CertCheck, Option<rustls::RootCertStore>)> {
        let verify = match self.sslmode {
            SslMode::Disable | SslMode::Allow | SslMode::Prefer => {
                return Ok((CertCheck::Nothing, None))
            }
            SslMode::Require | SslMode::VerifyCa => CertCheck::Chain,
            SslMode::VerifyFull => CertCheck::ChainAndHost,
        };
        let roots = match &self.roots {
            RootCerts::File(path) => load_root_file(path)?,
            RootCerts::System => load_system_roots()?,
            RootCerts::Default(Some(path)) if path.exists() => load_root_file(path)?,
            // libpq: `require` without a root file encrypts and checks nothing.
            RootCerts::Default(_) if self.sslmode == SslMode::Require => {
                return Ok((CertCheck::Nothing, None))
            }
            RootCerts::Default(_) => bail!(
                "sslmode={} checks the server's certificate, but no trusted authority was given: \
                 root certificate file {} does not exist. Pass sslrootcert=FILE with the server's \
                 CA certificate (Supabase: prod-ca-2021.crt from the project's database settings), \
                 sslrootcert=system for the system's trusted roots with sslmode=verify-full, \
                 or a weaker sslmode",
                self.sslmode,
                self.roots
            ),
        };
        Ok((verify, Some(roots)))
    }

    /// One line on how this connection travels: TLS with its protocol and what was checked, or
    /// plaintext. Info for the first connection of the process, debug for the rest; a warning
    /// for plaintext to a host that is not this machine.
    fn log_transport(&self, tls: Option<&Negotiated>, check: CertCheck) {
        static FIRST: AtomicBool = AtomicBool::new(true);
        static WARNED: AtomicBool = AtomicBool::new(false);
        let first = FIRST.swap(false, Ordering::Relaxed);
        match tls {
            Some(n) => {
                let checked = match check {
                    CertCheck::Nothing => "server certificate NOT checked".to_string(),
                    CertCheck::Chain => {
                        format!(
                            "certificate chain checked against {} (host name not checked)",
                            self.roots
                        )
                    }
                    CertCheck::ChainAndHost => {
                        format!(
                            "certificate chain and host name checked against {}",
                            self.roots
                        )
                    }
                };
                if first {
                    tracing::info!("connection to {self}: TLS ({n}), {checked}");
                } else {
                    tracing::debug!("connection to {self}: TLS ({n}), {checked}");
                }
            }
            None if !self.is_local() && !WARNED.swap(true, Ordering::Relaxed) => tracing::warn!(
                "connection to {self}: plaintext, NOT encrypted: passwords and customer data cross \
                 the network readable by anyone on the path. Use sslmode=require or stricter \
                 (Supabase: sslmode=verify-full&sslrootcert=prod-ca-2021.crt)"
            ),
            None if first => tracing::info!("connection to {self}: plaintext (not encrypted)"),
            None => tracing::debug!("connection to {self}: plaintext (not encrypted)"),
        }
    }

    /// Every host is this machine: a Unix socket, `localhost` or a loopback address.
    fn is_local(&self) -> bool {
        self.config.get_hosts().iter().all(|h| match h {
            Host::Unix(_) => true,
            Host::Tcp(name) => {
                name == "localhost"
                    || name
                        .trim_matches(|c| c == '[' || c == ']')
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
        })
    }
}

/// Whether the connection failed on the server's certificate (rustls says why).
fn is_certificate_error(e: &tokio_postgres::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return matches!(tls, rustls::Error::InvalidCertificate(_));
            }
        }
        source = err.source();
    }
    false
}

fn load_root_file(path: &Path) -> Result<rustls::RootCertStore> {
    let shown = path.display();
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).with_context(|| {
        format!("cannot read root certificate file {shown} (sslrootcert): check the path, or pass sslrootcert=system for the system's trusted roots")
    })?;
    for cert in certs {
        let cert = cert.with_context(|| format!("bad certificate in {shown} (sslrootcert)"))?;
        roots
            .add(cert)
            .with_context(|| format!("bad certificate in {shown} (sslrootcert)"))?;
    }
    if roots.is_empty() {
        bail!("root certificate file {shown} (sslrootcert) holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
    }
    Ok(roots)
}

/// The operating system's trust store, found the way OpenSSL finds it (`SSL_CERT_FILE`,
/// `SSL_CERT_DIR`, then the platform's bundle, on Debian /etc/ssl/certs/ca-certificates.crt).
fn load_system_roots() -> Result<rustls::RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let why: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
        bail!(
            "sslrootcert=system: no trusted root certificate found in the system's store{}; \
             install the CA bundle (Debian: apt-get install ca-certificates) or point SSL_CERT_FILE at one",
            if why.is_empty() {
                String::new()
            } else {
                format!(" ({})", why.join("; "))
            }
        );
    }
    Ok(roots)
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

fn tls_config(check: CertCheck, roots: Option<rustls::RootCertStore>) -> Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS setup")?;
    let roots = Arc::new(roots.unwrap_or_else(rustls::RootCertStore::empty));
    Ok(match check {
        // libpq: encrypt, but verify nothing unless asked to.
        CertCheck::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth(),
        CertCheck::ChainAndHost => builder.with_root_certificates(roots).with_no_client_auth(),
        CertCheck::Chain => {
            let inner =
                rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .context("TLS verifier")?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly(inner)))
                .with_no_client_auth()
        }
    })
}

/// What a TLS handshake settled on, for the log.
#[derive(Debug, Clone)]
struct Negotiated {
    protocol: String,
    cipher_suite: String,
}

impl fmt::Display for Negotiated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, {}", self.protocol, self.cipher_suite)
    }
}

/// tokio-postgres over rustls, remembering what the handshake negotiated.
#[derive(Clone)]
struct Tls {
    config: Arc<ClientConfig>,
    negotiated: Arc<Mutex<Option<Negotiated>>>,
}

impl Tls {
    fn new(config: ClientConfig) -> Self {
        Self {
            config: Arc::new(config),
            negotiated: Arc::default(),
        }
    }

    /// `None` when the server was never asked for TLS or declined it (`prefer`, `allow`).
    fn negotiated(&self) -> Option<Negotiated> {
        self.negotiated
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl<S> MakeTlsConnect<S> for Tls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type TlsConnect = TlsConnector;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, hostname: &str) -> Result<TlsConnector, Self::Error> {
        // Called once per host tried: forget what an earlier host negotiated.
        *self
            .negotiated
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
        Ok(TlsConnector {
            name: ServerName::try_from(hostname)?.to_owned(),
            connector: tokio_rustls::TlsConnector::from(self.config.clone()),
            negotiated: self.negotiated.clone(),
        })
    }
}

struct TlsConnector {
    name: ServerName<'static>,
    connector: tokio_rustls::TlsConnector,
    negotiated: Arc<Mutex<Option<Negotiated>>>,
}

impl<S> TlsConnect<S> for TlsConnector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<TlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let stream = self.connector.connect(self.name, stream).await?;
            let (_, session) = stream.get_ref();
            let protocol = match session.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3".to_string(),
                Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2".to_string(),
                Some(other) => format!("{other:?}"),
                None => "TLS".to_string(),
            };
            let cipher_suite = session
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()))
                .unwrap_or_default();
            *self
                .negotiated
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Negotiated {
                protocol,
                cipher_suite,
            });
            Ok(TlsStream(stream))
        })
    }
}

struct TlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S> tokio_postgres::tls::TlsStream for TlsStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// SCRAM channel binding (`tls-server-end-point`, RFC 5929): a hash of the server's
    /// certificate, with the hash of its signature algorithm (SHA-1 and MD5 become SHA-256).
    fn channel_binding(&self) -> ChannelBinding {
        use sha2::Digest;
        use x509_cert::der::Decode;
        let (_, session) = self.0.get_ref();
        let Some(cert) = session.peer_certificates().and_then(|c| c.first()) else {
            return ChannelBinding::none();
        };
        let Ok(parsed) = x509_cert::Certificate::from_der(cert) else {
            return ChannelBinding::none();
        };
        let hash = match parsed.signature_algorithm.oid.to_string().as_str() {
            // sha1/sha256WithRSAEncryption, ecdsa-with-SHA256
            "1.2.840.113549.1.1.5" | "1.2.840.113549.1.1.11" | "1.2.840.10045.4.3.2" => {
                sha2::Sha256::digest(cert).to_vec()
            }
            // sha384WithRSAEncryption, ecdsa-with-SHA384
            "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => sha2::Sha384::digest(cert).to_vec(),
            // sha512WithRSAEncryption, ecdsa-with-SHA512, Ed25519
            "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" | "1.3.101.112" => {
                sha2::Sha512::digest(cert).to_vec()
            }
            _ => return ChannelBinding::none(),
        };
        ChannelBinding::tls_server_end_point(hash)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
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

    #[test]
    fn sslrootcert_system_means_verify_full_and_refuses_weaker_modes() {
        let info = ConnInfo::resolve_with(
            Some("postgres://u@db.example.com/d?sslrootcert=system"),
            env(&[]),
        )
        .unwrap();
        assert_eq!(info.roots, RootCerts::System);
        assert_eq!(
            info.sslmode,
            SslMode::VerifyFull,
            "libpq's default with system roots"
        );
        for mode in ["disable", "prefer", "require", "verify-ca"] {
            let err = ConnInfo::resolve_with(
                Some(&format!(
                    "postgres://u@h/d?sslmode={mode}&sslrootcert=system"
                )),
                env(&[]),
            )
            .unwrap_err()
            .to_string();
            assert!(
                err.contains(&format!(
                    "sslmode={mode} may not be used with sslrootcert=system"
                )),
                "{err}"
            );
            assert!(err.contains("use sslmode=verify-full"), "{err}");
        }
        let err = ConnInfo::resolve_with(
            None,
            env(&[
                ("PGHOST", "h"),
                ("PGSSLMODE", "require"),
                ("PGSSLROOTCERT", "system"),
            ]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("sslrootcert=system"), "{err}");
    }

    #[test]
    fn sslrootcert_comes_from_the_string_then_pgsslrootcert_then_home() {
        let info = ConnInfo::resolve_with(
            Some("postgres://u@h/d?sslrootcert=%2Fcerts%2Fprod-ca-2021.crt"),
            env(&[("PGSSLROOTCERT", "/other.crt"), ("HOME", "/home/me")]),
        )
        .unwrap();
        assert_eq!(
            info.roots,
            RootCerts::File("/certs/prod-ca-2021.crt".into())
        );
        let info = ConnInfo::resolve_with(
            Some("host=h user=u"),
            env(&[("PGSSLROOTCERT", "/other.crt"), ("HOME", "/home/me")]),
        )
        .unwrap();
        assert_eq!(info.roots, RootCerts::File("/other.crt".into()));
        let info =
            ConnInfo::resolve_with(None, env(&[("PGHOST", "h"), ("HOME", "/home/me")])).unwrap();
        assert_eq!(
            info.roots,
            RootCerts::Default(Some("/home/me/.postgresql/root.crt".into()))
        );
    }

    #[test]
    fn verify_ca_and_verify_full_without_a_root_file_say_what_to_pass() {
        let home = tempfile::tempdir().unwrap();
        let home_s = home.path().display().to_string();
        for mode in ["verify-ca", "verify-full"] {
            let info = ConnInfo::resolve_with(
                Some(&format!("postgres://u@db.example.com/d?sslmode={mode}")),
                env(&[("HOME", &home_s)]),
            )
            .unwrap();
            let err = info.certificate_check().unwrap_err().to_string();
            assert!(
                err.contains(&format!("{home_s}/.postgresql/root.crt does not exist")),
                "{err}"
            );
            assert!(err.contains("sslrootcert=FILE"), "{err}");
            assert!(err.contains("sslrootcert=system"), "{err}");
        }
    }

    #[test]
    fn require_checks_nothing_without_a_root_file_and_refuses_a_missing_named_one() {
        let home = tempfile::tempdir().unwrap();
        let home_s = home.path().display().to_string();
        let info = ConnInfo::resolve_with(
            Some("postgres://u@db.example.com/d?sslmode=require"),
            env(&[("HOME", &home_s)]),
        )
        .unwrap();
        assert_eq!(info.certificate_check().unwrap().0, CertCheck::Nothing);
        let missing = home.path().join("nope.crt");
        let info = ConnInfo::resolve_with(
            Some(&format!(
                "postgres://u@db.example.com/d?sslmode=require&sslrootcert={}",
                missing.display()
            )),
            env(&[]),
        )
        .unwrap();
        let err = format!("{:#}", info.certificate_check().unwrap_err());
        assert!(
            err.contains(&format!(
                "cannot read root certificate file {}",
                missing.display()
            )),
            "{err}"
        );
    }

    #[test]
    fn loopback_and_sockets_are_local_anything_else_is_not() {
        let local = |url: &str| {
            ConnInfo::resolve_with(Some(url), env(&[]))
                .unwrap()
                .is_local()
        };
        assert!(local("postgres://u@localhost/d"));
        assert!(local("postgres://u@127.0.0.1:5432/d"));
        assert!(local("host=/var/run/postgresql user=u"));
        assert!(!local("postgres://u@db.abcd.supabase.co/d"));
        assert!(!local("postgres://u@10.0.0.5/d"));
    }
}
