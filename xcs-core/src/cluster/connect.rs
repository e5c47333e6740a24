//! Connecting to the NATS server, with credentials, and the settings callers and workers share.

use std::time::Duration;

use crate::error::XcsError;

/// Settings shared by a cluster's callers and workers: both sides must use the same `prefix`.
///
/// ```
/// use std::time::Duration;
/// use xcs::cluster::ClusterOptions;
///
/// let options = ClusterOptions::new()
///     .prefix("team-a.xcs")
///     .heartbeat_timeout(Duration::from_secs(5));
/// assert_eq!(options.subject_prefix(), "team-a.xcs");
/// ```
#[derive(Clone)]
pub struct ClusterOptions {
    prefix: String,
    heartbeat_timeout: Duration,
    max_attempts: u32,
    inbox_prefix: Option<String>,
    key: Option<std::sync::Arc<[u8]>>,
}

impl std::fmt::Debug for ClusterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is never shown, only whether there is one.
        f.debug_struct("ClusterOptions")
            .field("prefix", &self.prefix)
            .field("heartbeat_timeout", &self.heartbeat_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("inbox_prefix", &self.inbox_prefix)
            .field("cluster_key", &self.key.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            prefix: DEFAULT_PREFIX.to_owned(),
            heartbeat_timeout: Duration::from_secs(2),
            max_attempts: 3,
            inbox_prefix: None,
            key: std::env::var_os(KEY_VARIABLE)
                .filter(|key| !key.is_empty())
                .map(|key| key.as_encoded_bytes().into()),
        }
    }
}

/// The environment variable the default [`ClusterOptions`] take the cluster key from.
pub const KEY_VARIABLE: &str = "XCS_CLUSTER_KEY";

/// The subject prefix used unless [`ClusterOptions::prefix`] sets another.
pub const DEFAULT_PREFIX: &str = "xcs";

/// How often a worker tells the caller it is still working on a chunk.
pub(crate) const HEARTBEAT: Duration = Duration::from_millis(200);

impl ClusterOptions {
    /// The defaults: prefix `xcs`, a 2 s heartbeat timeout, 3 attempts per chunk, the server's
    /// default inbox prefix (`_INBOX`), and the cluster key in the environment variable
    /// `XCS_CLUSTER_KEY` if it is set and not empty (none otherwise).
    pub fn new() -> Self {
        ClusterOptions::default()
    }

    /// The first tokens of every subject the cluster uses (default `xcs`): `<prefix>.hello`
    /// (discovery) and `<prefix>.run.<operator>` (work). Callers and workers with different
    /// prefixes do not see each other; NATS permissions on `<prefix>.>` decide who may submit
    /// work and who may serve it.
    ///
    /// # Panics
    /// If `prefix` is not a valid NATS subject: empty, with whitespace or an empty token, or
    /// with the wildcards `*` / `>`.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        assert!(
            valid_subject(&prefix),
            "`{prefix}` is not a valid NATS subject prefix"
        );
        self.prefix = prefix;
        self
    }

    /// The subject prefix.
    pub fn subject_prefix(&self) -> &str {
        &self.prefix
    }

    /// How long a caller waits without hearing from the worker running a chunk before it
    /// gives the chunk to another worker (workers report every 200 ms while they work).
    #[must_use]
    pub fn heartbeat_timeout(mut self, timeout: Duration) -> Self {
        self.heartbeat_timeout = timeout.max(HEARTBEAT * 2);
        self
    }

    /// How many times a chunk is sent at most before its items fail (default 3): a chunk whose
    /// workers keep dying is not sent forever.
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The prefix of the subjects this process receives replies on (default `_INBOX`, the
    /// NATS clients' default). With per-user permissions on the server, give each caller a
    /// prefix of its own (`_INBOX_alice`) and allow that user to subscribe to `<prefix>.>`
    /// only: no other client can then read its replies.
    ///
    /// ```
    /// let options = xcs::cluster::ClusterOptions::new().inbox_prefix("_INBOX_alice");
    /// assert_eq!(options.reply_prefix(), "_INBOX_alice");
    /// ```
    ///
    /// # Panics
    /// If `prefix` is not a valid NATS subject (as for [`prefix`](ClusterOptions::prefix)).
    #[must_use]
    pub fn inbox_prefix(mut self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        assert!(
            valid_subject(&prefix),
            "`{prefix}` is not a valid NATS subject prefix"
        );
        self.inbox_prefix = Some(prefix);
        self
    }

    /// The inbox prefix replies come to.
    pub fn reply_prefix(&self) -> &str {
        self.inbox_prefix.as_deref().unwrap_or("_INBOX")
    }

    /// A secret shared by the cluster's callers and workers: every request and reply is then
    /// signed with it (HMAC-SHA256, over the whole message and the subjects it travels on);
    /// workers ignore requests not signed with it, callers ignore replies not signed with it.
    /// For servers where clients cannot be kept apart by permissions: a client without the
    /// key may still read messages (and so the items and outcomes), delay them, or take and
    /// drop chunks, but can no longer have a caller accept an outcome it did not compute.
    /// An empty key means none. The default is the variable `XCS_CLUSTER_KEY`; the key is
    /// never displayed.
    ///
    /// ```
    /// let options = xcs::cluster::ClusterOptions::new().cluster_key("a long random secret");
    /// assert!(options.has_cluster_key());
    /// assert!(!format!("{options:?}").contains("secret"));
    /// assert!(!options.cluster_key("").has_cluster_key());
    /// ```
    #[must_use]
    pub fn cluster_key(mut self, key: impl AsRef<[u8]>) -> Self {
        let key = key.as_ref();
        self.key = (!key.is_empty()).then(|| key.into());
        self
    }

    /// Whether requests and replies are signed with a cluster key.
    pub fn has_cluster_key(&self) -> bool {
        self.key.is_some()
    }

    pub(crate) fn inbox_prefix_set(&self) -> Option<&str> {
        self.inbox_prefix.as_deref()
    }

    pub(crate) fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }

    pub(crate) fn heartbeat(&self) -> Duration {
        self.heartbeat_timeout
    }

    pub(crate) fn attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The discovery subject.
    pub(crate) fn hello_subject(&self) -> String {
        format!("{}.hello", self.prefix)
    }

    /// The subject chunks of `operator` are sent to. Characters a subject token cannot hold
    /// become `_`; a worker checks the full name in the request, so two names that map to one
    /// subject cannot be confused.
    pub(crate) fn run_subject(&self, operator: &str) -> String {
        let token: String = operator
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let token = if token.is_empty() { "_".into() } else { token };
        format!("{}.run.{token}", self.prefix)
    }

    /// The queue group the workers of an operator share.
    pub(crate) fn queue_group(&self) -> String {
        format!("{}.workers", self.prefix)
    }

    /// The subject callers cancel chunks on (every worker reads it).
    pub(crate) fn cancel_subject(&self) -> String {
        format!("{}.cancel", self.prefix)
    }
}

fn valid_subject(subject: &str) -> bool {
    !subject.is_empty()
        && subject.split('.').all(|token| {
            !token.is_empty()
                && !token
                    .chars()
                    .any(|c| c.is_whitespace() || c == '*' || c == '>')
        })
}

/// The credentials a connection presents, from the URL or the environment.
#[derive(Default, Debug, PartialEq, Eq)]
struct Credentials {
    user: Option<(String, String)>,
    token: Option<String>,
    nkey_seed: Option<String>,
    creds_file: Option<String>,
    ca: Option<String>,
    cert: Option<(String, String)>,
}

/// Reads the credentials: `user:password@` or `token@` in the URL first, then the
/// environment (`NATS_USER` + `NATS_PASSWORD`, `NATS_TOKEN`, `NATS_NKEY` — a seed or a file
/// holding one —, `NATS_CREDS`, `NATS_CA`, `NATS_CERT` + `NATS_KEY`). Returns them and the URL
/// without them.
fn credentials(
    url: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(Credentials, async_nats::ServerAddr), XcsError> {
    let invalid = |reason: String| XcsError::Connect {
        url: strip_userinfo(url),
        reason,
    };
    let addr: async_nats::ServerAddr = url.trim().parse().map_err(|e| invalid(format!("{e}")))?;
    let mut creds = Credentials::default();
    match (addr.username(), addr.password()) {
        (Some(user), Some(password)) => {
            creds.user = Some((percent_decode(user), percent_decode(password)));
        }
        (Some(token), None) => creds.token = Some(percent_decode(token)),
        _ => {}
    }
    let mut bare = addr.into_inner();
    let _ = bare.set_username("");
    let _ = bare.set_password(None);
    let addr = async_nats::ServerAddr::from_url(bare).map_err(|e| invalid(format!("{e}")))?;
    if creds.user.is_none() && creds.token.is_none() {
        match (env("NATS_USER"), env("NATS_PASSWORD"), env("NATS_TOKEN")) {
            (Some(user), Some(password), _) => creds.user = Some((user, password)),
            (Some(_), None, _) => {
                return Err(invalid("NATS_USER is set but NATS_PASSWORD is not".into()));
            }
            (None, _, Some(token)) => creds.token = Some(token),
            _ => {}
        }
    }
    if let Some(nkey) = env("NATS_NKEY") {
        let seed = if nkey.trim_start().starts_with('S') && !std::path::Path::new(&nkey).exists() {
            nkey
        } else {
            std::fs::read_to_string(&nkey)
                .map_err(|e| invalid(format!("cannot read the nkey seed file `{nkey}`: {e}")))?
        };
        creds.nkey_seed = Some(seed.trim().to_owned());
    }
    creds.creds_file = env("NATS_CREDS");
    creds.ca = env("NATS_CA");
    match (env("NATS_CERT"), env("NATS_KEY")) {
        (Some(cert), Some(key)) => creds.cert = Some((cert, key)),
        (None, None) => {}
        _ => return Err(invalid("NATS_CERT and NATS_KEY go together".into())),
    }
    Ok((creds, addr))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(byte) =
                u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("-"), 16)
            {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The URL as it may be shown: without a password or token.
pub(crate) fn strip_userinfo(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}{}", &url[..scheme + 3], &url[at + 1..])
        }
        (None, Some(at)) => url[at + 1..].to_owned(),
        _ => url.to_owned(),
    }
}

/// Connects to the server at `url` (credentials from the URL or the environment, see the
/// module docs), naming the connection `name`.
pub(crate) async fn connect(
    url: &str,
    name: &str,
    inbox_prefix: Option<&str>,
) -> Result<async_nats::Client, XcsError> {
    let shown = strip_userinfo(url);
    let (creds, addr) = credentials(url, |key| std::env::var(key).ok())?;
    let failed = |reason: String| XcsError::Connect {
        url: shown.clone(),
        reason,
    };
    let mut options = match &creds.creds_file {
        Some(path) => async_nats::ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|e| failed(format!("cannot read the credentials file `{path}`: {e}")))?,
        None => async_nats::ConnectOptions::new(),
    };
    if let Some((user, password)) = creds.user {
        options = options.user_and_password(user, password);
    }
    if let Some(token) = creds.token {
        options = options.token(token);
    }
    if let Some(seed) = creds.nkey_seed {
        options = options.nkey(seed);
    }
    if let Some(ca) = creds.ca {
        options = options.add_root_certificates(ca.into()).require_tls(true);
    }
    if let Some((cert, key)) = creds.cert {
        options = options
            .add_client_certificate(cert.into(), key.into())
            .require_tls(true);
    }
    if let Some(prefix) = inbox_prefix {
        options = options.custom_inbox_prefix(prefix);
    }
    options
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        // Chunks carry their own deadlines; the client's default 10 s request timeout is unused.
        .request_timeout(None)
        .connect(addr)
        .await
        .map_err(|e| failed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn user_password_and_token_come_from_the_url_and_leave_it() {
        let (creds, addr) = credentials("nats://alice:s%40cret@127.0.0.1:4333", no_env).unwrap();
        assert_eq!(creds.user, Some(("alice".into(), "s@cret".into())));
        assert_eq!(addr.username(), None);
        assert_eq!(addr.port(), 4333);
        let (creds, _) = credentials("nats://t0ken@localhost:4222", no_env).unwrap();
        assert_eq!(creds.token.as_deref(), Some("t0ken"));
    }

    #[test]
    fn the_environment_fills_in_what_the_url_lacks() {
        let env = |key: &str| match key {
            "NATS_USER" => Some("bob".to_owned()),
            "NATS_PASSWORD" => Some("pw".to_owned()),
            "NATS_NKEY" => Some("SUAEXAMPLESEED".to_owned()),
            _ => None,
        };
        let (creds, _) = credentials("nats://localhost:4222", env).unwrap();
        assert_eq!(creds.user, Some(("bob".into(), "pw".into())));
        assert_eq!(creds.nkey_seed.as_deref(), Some("SUAEXAMPLESEED"));
        // The URL wins over the environment.
        let (creds, _) = credentials("nats://carol:x@localhost:4222", env).unwrap();
        assert_eq!(creds.user, Some(("carol".into(), "x".into())));
        let half = |key: &str| (key == "NATS_USER").then(|| "bob".to_owned());
        assert!(matches!(
            credentials("nats://localhost", half),
            Err(XcsError::Connect { .. })
        ));
    }

    #[test]
    fn urls_are_shown_without_secrets() {
        assert_eq!(
            strip_userinfo("nats://alice:secret@host:4222"),
            "nats://host:4222"
        );
        assert_eq!(strip_userinfo("tok@host:4222"), "host:4222");
        assert_eq!(strip_userinfo("nats://host:4222"), "nats://host:4222");
        let error = credentials("http://alice:secret@host", no_env).unwrap_err();
        assert!(!error.to_string().contains("secret"), "{error}");
    }

    #[test]
    fn subjects_are_namespaced_and_safe() {
        let options = ClusterOptions::new();
        assert_eq!(options.hello_subject(), "xcs.hello");
        assert_eq!(options.run_subject("score"), "xcs.run.score");
        assert_eq!(options.run_subject("a.b *>c"), "xcs.run.a_b___c");
        assert_eq!(
            ClusterOptions::new().prefix("t.x").run_subject(""),
            "t.x.run._"
        );
        for bad in ["", "a..b", "a.*", "a b", ">"] {
            assert!(!valid_subject(bad), "{bad}");
        }
    }
}
