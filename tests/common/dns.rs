//! In-process authoritative DNS server for integration tests.
//!
//! [`TestDns::start`] binds UDP and TCP on the same `127.0.0.1` port and answers
//! queries from an in-memory record map that tests can change at any time
//! (MX, A, AAAA, TXT, null MX, forced SERVFAIL). It is built directly on
//! `hickory_server::server::RequestHandler` (no catalog/zone machinery), and is
//! meant to be queried by a `hickory_resolver` built with [`resolver`] (or
//! [`resolver_config`] + [`resolver_opts`]), which talks only to this server
//! and has caching switched off.
//!
//! Semantics:
//! * names are case-insensitive, the trailing dot is optional;
//! * every response echoes the question; NOERROR and NXDOMAIN answers are
//!   authoritative (AA set), SERVFAIL ones are not;
//! * a name with records, but none of the queried type, answers NOERROR with an
//!   empty answer section (NODATA); so does an empty non-terminal (a name that
//!   has no records itself but has records below it, RFC 8020);
//! * any other unknown name answers NXDOMAIN;
//! * a name marked with [`TestDns::servfail`] answers SERVFAIL to every query;
//! * all records of the queried type are returned, in insertion order (real
//!   servers give no order either, so add MX records out of order to check
//!   that the code under test sorts them);
//! * answers carry the TTL set by [`TestDns::set_ttl`] (default
//!   [`DEFAULT_TTL`]); negative answers carry no SOA, so hickory never caches
//!   them for longer than its `negative_min_ttl` (0 by default);
//! * the server stops when the [`TestDns`] is dropped.

use std::collections::HashMap;
use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError, NoRecords};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::{A, AAAA, MX, TXT};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

/// TTL put on answers until [`TestDns::set_ttl`] is called.
pub const DEFAULT_TTL: u32 = 300;

/// A running in-process DNS server; stops serving when dropped.
pub struct TestDns {
    addr: SocketAddr,
    state: Arc<State>,
    // Owns the server's tasks: dropping the Server drops its JoinSet, which
    // aborts the UDP and TCP tasks (and, through their own JoinSets, every
    // per-connection task).
    server: Server<Handler>,
}

#[derive(Default)]
struct State {
    names: RwLock<HashMap<String, Entry>>,
    queries: AtomicUsize,
    ttl: AtomicU32,
}

#[derive(Default)]
struct Entry {
    records: Vec<Record>,
    servfail: bool,
}

impl TestDns {
    /// Binds UDP and TCP on 127.0.0.1 port 0 (same port for both), serves until dropped.
    pub async fn start() -> TestDns {
        let (udp, tcp) = bind_same_port().await;
        let addr = udp.local_addr().expect("udp local_addr");
        let state = Arc::new(State {
            ttl: AtomicU32::new(DEFAULT_TTL),
            ..State::default()
        });
        let mut server = Server::new(Handler {
            state: state.clone(),
        });
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(10), 64);
        TestDns {
            addr,
            state,
            server,
        }
    }

    /// The address (127.0.0.1:port) the server answers on, over both UDP and TCP.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Adds an MX record `domain MX preference exchange`.
    pub fn add_mx(&self, domain: &str, preference: u16, exchange: &str) {
        self.add(domain, RData::MX(MX::new(preference, parse_name(exchange))));
    }

    /// Adds an A record.
    pub fn add_a(&self, name: &str, ip: Ipv4Addr) {
        self.add(name, RData::A(A(ip)));
    }

    /// Adds an AAAA record.
    pub fn add_aaaa(&self, name: &str, ip: Ipv6Addr) {
        self.add(name, RData::AAAA(AAAA(ip)));
    }

    /// Adds a TXT record; a text longer than 255 bytes is split into several
    /// 255-byte character-strings of the same record (as for long SPF/DKIM
    /// records), which the reader must concatenate.
    pub fn add_txt(&self, name: &str, text: &str) {
        let bytes = text.as_bytes();
        let chunks: Vec<&[u8]> = if bytes.is_empty() {
            vec![&[][..]]
        } else {
            bytes.chunks(255).collect()
        };
        self.add(name, RData::TXT(TXT::from_bytes(chunks)));
    }

    /// Makes `domain` a null MX domain (RFC 7505): its MX records are replaced
    /// by the single record `MX 0 .`.
    pub fn null_mx(&self, domain: &str) {
        let mut names = self.state.names.write().unwrap();
        let entry = names.entry(key_of(&parse_name(domain))).or_default();
        entry.records.retain(|r| r.record_type() != RecordType::MX);
        entry.records.push(Record::from_rdata(
            parse_name(domain),
            DEFAULT_TTL,
            RData::MX(MX::new(0, Name::root())),
        ));
    }

    /// Every query for `name` (any type) answers SERVFAIL until [`TestDns::clear`].
    pub fn servfail(&self, name: &str) {
        let mut names = self.state.names.write().unwrap();
        names.entry(key_of(&parse_name(name))).or_default().servfail = true;
    }

    /// Forgets everything about `name` (records and SERVFAIL mark); it then
    /// answers NXDOMAIN unless names below it still exist.
    pub fn clear(&self, name: &str) {
        self.state
            .names
            .write()
            .unwrap()
            .remove(&key_of(&parse_name(name)));
    }

    /// Sets the TTL of every answer from now on (records already added included).
    pub fn set_ttl(&self, ttl: u32) {
        self.state.ttl.store(ttl, Ordering::SeqCst);
    }

    /// Number of queries answered so far (over UDP and TCP, any outcome).
    pub fn queries(&self) -> usize {
        self.state.queries.load(Ordering::SeqCst)
    }

    fn add(&self, name: &str, rdata: RData) {
        let owner = parse_name(name);
        let record = Record::from_rdata(owner.clone(), DEFAULT_TTL, rdata);
        let mut names = self.state.names.write().unwrap();
        let entry = names.entry(key_of(&owner)).or_default();
        // An RRset is a set: adding the same record twice keeps one copy.
        if !entry.records.contains(&record) {
            entry.records.push(record);
        }
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        // Ask the accept loops to stop; dropping `self.server` then aborts its tasks.
        self.server.shutdown_token().cancel();
    }
}

/// A hickory-resolver config that queries only this server, over UDP and
/// (for truncated answers) TCP on `addr`'s port.
///
/// Caching is not part of `ResolverConfig` in hickory 0.26: it is set in
/// `ResolverOpts` (see [`resolver_opts`], `cache_size = 0`).
pub fn resolver_config(addr: SocketAddr) -> ResolverConfig {
    let mut udp = ConnectionConfig::udp();
    udp.port = addr.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = addr.port();
    ResolverConfig::from_name_servers(vec![NameServerConfig::new(addr.ip(), true, vec![udp, tcp])])
}

/// Resolver options for tests: no cache (`cache_size = 0` disables hickory's
/// moka cache entirely, so every lookup reaches the server), no /etc/hosts, a
/// 2 s timeout. Everything else is hickory's default (EDNS on, 2 retries after
/// a failure such as SERVFAIL, so a SERVFAIL lookup costs 3 queries).
pub fn resolver_opts() -> ResolverOpts {
    let mut opts = ResolverOpts::default();
    opts.cache_size = 0;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.timeout = Duration::from_secs(2);
    opts
}

/// A Tokio resolver that queries only the server at `addr`, without caching.
pub fn resolver(addr: SocketAddr) -> TokioResolver {
    TokioResolver::builder_with_config(resolver_config(addr), TokioRuntimeProvider::default())
        .with_options(resolver_opts())
        .build()
        .expect("build hickory resolver")
}

/// True when the lookup failed because the name has no records of the asked
/// type: NXDOMAIN or NODATA (an authoritative "no", e.g. "no MX → fall back to
/// A" or "SPF: none"). False for SERVFAIL, REFUSED, timeouts and I/O errors
/// (temporary errors).
pub fn is_no_records(err: &NetError) -> bool {
    matches!(err, NetError::Dns(DnsError::NoRecordsFound(_)))
}

/// True when the lookup failed with NXDOMAIN (the name does not exist at all).
pub fn is_nxdomain(err: &NetError) -> bool {
    err.is_nx_domain()
}

/// True when the name exists but has no records of the asked type (NOERROR,
/// empty answer).
pub fn is_nodata(err: &NetError) -> bool {
    matches!(
        err,
        NetError::Dns(DnsError::NoRecordsFound(NoRecords {
            response_code: ResponseCode::NoError,
            ..
        }))
    )
}

/// True when the server answered SERVFAIL.
pub fn is_servfail(err: &NetError) -> bool {
    matches!(
        err,
        NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail))
    )
}

/// Parses a user-given name, trailing dot optional, into a fully qualified Name
/// (ASCII names keep their case; non-ASCII ones are IDNA-encoded).
fn parse_name(name: &str) -> Name {
    let parsed = if name.is_ascii() {
        Name::from_ascii(name)
    } else {
        Name::from_utf8(name)
    };
    let mut parsed = parsed.unwrap_or_else(|e| panic!("invalid DNS name {name:?}: {e}"));
    parsed.set_fqdn(true);
    parsed
}

/// Map key: lowercase ASCII form without the trailing dot ("" for the root).
fn key_of(name: &Name) -> String {
    name.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

async fn bind_same_port() -> (tokio::net::UdpSocket, tokio::net::TcpListener) {
    let mut last_err = None;
    for _ in 0..50 {
        let udp = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind UDP 127.0.0.1:0");
        let port = udp.local_addr().expect("udp local_addr").port();
        match tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await {
            Ok(tcp) => return (udp, tcp),
            Err(e) => last_err = Some(e), // TCP port taken: try another UDP port
        }
    }
    panic!("could not bind UDP and TCP on one port: {last_err:?}");
}

struct Handler {
    state: Arc<State>,
}

enum Outcome {
    Answer(ResponseCode, Vec<Record>),
    Error(ResponseCode),
}

impl Handler {
    fn resolve(&self, request: &Request) -> Outcome {
        if request.metadata.op_code != OpCode::Query {
            return Outcome::Error(ResponseCode::NotImp);
        }
        let [query] = request.queries.queries() else {
            return Outcome::Error(ResponseCode::FormErr);
        };
        let key = key_of(&Name::from(query.name()));
        let qtype = query.query_type();
        // Owner name as the client wrote it (keeps 0x20 case randomization intact).
        let owner = query.original().name().clone();
        let ttl = self.state.ttl.load(Ordering::SeqCst);

        let names = self.state.names.read().unwrap();
        match names.get(&key) {
            Some(entry) if entry.servfail => Outcome::Error(ResponseCode::ServFail),
            Some(entry) if !entry.records.is_empty() => {
                let answers = entry
                    .records
                    .iter()
                    .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
                    .map(|r| Record::from_rdata(owner.clone(), ttl, r.data.clone()))
                    .collect();
                Outcome::Answer(ResponseCode::NoError, answers)
            }
            _ => {
                // Empty non-terminal: some name below this one has records.
                let suffix = format!(".{key}");
                let exists = names.iter().any(|(k, e)| {
                    !e.records.is_empty() && (key.is_empty() || k.ends_with(&suffix))
                });
                let code = if exists {
                    ResponseCode::NoError
                } else {
                    ResponseCode::NXDomain
                };
                Outcome::Answer(code, Vec::new())
            }
        }
    }
}

// `RequestHandler` is declared with `#[async_trait]`; this is the signature that
// macro produces, written out so that no `async-trait` dependency is needed.
impl RequestHandler for Handler {
    fn handle_request<'life0, 'life1, 'async_trait, R, T>(
        &'life0 self,
        request: &'life1 Request,
        mut response_handle: R,
    ) -> Pin<Box<dyn Future<Output = ResponseInfo> + Send + 'async_trait>>
    where
        R: ResponseHandler + 'async_trait,
        T: Time + 'async_trait,
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            self.state.queries.fetch_add(1, Ordering::SeqCst);
            let outcome = self.resolve(request);

            let edns = request.edns.as_ref().map(|req_edns| {
                let mut edns = Edns::new();
                edns.set_max_payload(req_edns.max_payload().max(512));
                edns.set_version(0);
                edns
            });
            let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());

            let mut metadata = Metadata::response_from_request(&request.metadata);
            let result = match &outcome {
                Outcome::Answer(code, answers) => {
                    metadata.authoritative = true;
                    metadata.response_code = *code;
                    let response = builder.build(
                        metadata,
                        answers.iter(),
                        std::iter::empty(),
                        std::iter::empty(),
                        std::iter::empty(),
                    );
                    response_handle.send_response(response).await
                }
                Outcome::Error(code) => {
                    let response = builder.error_msg(&request.metadata, *code);
                    response_handle.send_response(response).await
                }
            };
            result.unwrap_or_else(|_| {
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            })
        })
    }
}
