//! The options Traefik's label providers accept, with their JSON names and
//! types, so that labels decode to what Traefik's own decoder would produce
//! (field names case-insensitive, lists comma-separated).

/// The type of one option.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Bool,
    Int,
    Str,
    /// A Go duration (`10s`, `1m30s`) or a number of seconds.
    Duration,
    /// Comma-separated list of strings.
    List,
    /// String map: the next label segment is the key, kept as written.
    Map,
    /// Nested options; `=true` alone creates it empty, `=false` removes it.
    Struct(&'static [Field]),
    /// A list of structs addressed as `name[n].option`.
    Indexed(&'static [Field]),
}

pub type Field = (&'static str, Kind);

use Kind::*;

const DOMAIN: &[Field] = &[("main", Str), ("sans", List)];

const ROUTER_TLS: &[Field] = &[
    ("certResolver", Str),
    ("options", Str),
    ("domains", Indexed(DOMAIN)),
];

const OBSERVABILITY: &[Field] = &[("accessLogs", Bool), ("metrics", Bool), ("tracing", Bool)];

pub const ROUTER: &[Field] = &[
    ("rule", Str),
    ("ruleSyntax", Str),
    ("entryPoints", List),
    ("middlewares", List),
    ("service", Str),
    ("priority", Int),
    ("tls", Struct(ROUTER_TLS)),
    ("observability", Struct(OBSERVABILITY)),
];

const TCP_ROUTER_TLS: &[Field] = &[
    ("passthrough", Bool),
    ("certResolver", Str),
    ("options", Str),
    ("domains", Indexed(DOMAIN)),
];

pub const TCP_ROUTER: &[Field] = &[
    ("rule", Str),
    ("ruleSyntax", Str),
    ("entryPoints", List),
    ("middlewares", List),
    ("service", Str),
    ("priority", Int),
    ("tls", Struct(TCP_ROUTER_TLS)),
];

pub const UDP_ROUTER: &[Field] = &[("entryPoints", List), ("service", Str)];

/// `server` is label-only: Traefik turns it into `servers[0]`; the policy
/// builds the server from it and the chosen address.
const HTTP_SERVER: &[Field] = &[
    ("port", Str),
    ("scheme", Str),
    ("url", Str),
    ("weight", Int),
    ("preservePath", Bool),
];

const HEALTH_CHECK: &[Field] = &[
    ("scheme", Str),
    ("mode", Str),
    ("path", Str),
    ("method", Str),
    ("status", Int),
    ("port", Int),
    ("interval", Duration),
    ("unhealthyInterval", Duration),
    ("timeout", Duration),
    ("hostname", Str),
    ("followRedirects", Bool),
    ("headers", Map),
];

const COOKIE: &[Field] = &[
    ("name", Str),
    ("secure", Bool),
    ("httpOnly", Bool),
    ("sameSite", Str),
    ("maxAge", Int),
    ("path", Str),
    ("domain", Str),
];

const STICKY: &[Field] = &[("cookie", Struct(COOKIE))];

const RESPONSE_FORWARDING: &[Field] = &[("flushInterval", Duration)];

const HTTP_LB: &[Field] = &[
    ("server", Struct(HTTP_SERVER)),
    ("passHostHeader", Bool),
    ("healthCheck", Struct(HEALTH_CHECK)),
    ("sticky", Struct(STICKY)),
    ("serversTransport", Str),
    ("responseForwarding", Struct(RESPONSE_FORWARDING)),
];

pub const HTTP_SERVICE: &[Field] = &[("loadBalancer", Struct(HTTP_LB))];

const TCP_SERVER: &[Field] = &[("port", Str), ("tls", Bool)];
const PROXY_PROTOCOL: &[Field] = &[("version", Int)];

const TCP_LB: &[Field] = &[
    ("server", Struct(TCP_SERVER)),
    ("serversTransport", Str),
    ("proxyProtocol", Struct(PROXY_PROTOCOL)),
    ("terminationDelay", Int),
];

pub const TCP_SERVICE: &[Field] = &[("loadBalancer", Struct(TCP_LB))];

const UDP_SERVER: &[Field] = &[("port", Str)];
const UDP_LB: &[Field] = &[("server", Struct(UDP_SERVER))];
pub const UDP_SERVICE: &[Field] = &[("loadBalancer", Struct(UDP_LB))];

const IP_STRATEGY: &[Field] = &[("depth", Int), ("excludedIPs", List), ("ipv6Subnet", Int)];

const SOURCE_CRITERION: &[Field] = &[
    ("ipStrategy", Struct(IP_STRATEGY)),
    ("requestHeaderName", Str),
    ("requestHost", Bool),
];

const CLIENT_TLS: &[Field] = &[
    ("ca", Str),
    ("cert", Str),
    ("key", Str),
    ("insecureSkipVerify", Bool),
    ("caOptional", Bool),
];

const AUTH: &[Field] = &[
    ("users", List),
    ("usersFile", Str),
    ("realm", Str),
    ("removeHeader", Bool),
    ("headerField", Str),
];

const HEADERS: &[Field] = &[
    ("customRequestHeaders", Map),
    ("customResponseHeaders", Map),
    ("accessControlAllowCredentials", Bool),
    ("accessControlAllowHeaders", List),
    ("accessControlAllowMethods", List),
    ("accessControlAllowOriginList", List),
    ("accessControlAllowOriginListRegex", List),
    ("accessControlExposeHeaders", List),
    ("accessControlMaxAge", Int),
    ("addVaryHeader", Bool),
    ("allowedHosts", List),
    ("hostsProxyHeaders", List),
    ("sslProxyHeaders", Map),
    ("stsSeconds", Int),
    ("stsIncludeSubdomains", Bool),
    ("stsPreload", Bool),
    ("forceSTSHeader", Bool),
    ("frameDeny", Bool),
    ("customFrameOptionsValue", Str),
    ("contentTypeNosniff", Bool),
    ("browserXssFilter", Bool),
    ("customBrowserXSSValue", Str),
    ("contentSecurityPolicy", Str),
    ("contentSecurityPolicyReportOnly", Str),
    ("publicKey", Str),
    ("referrerPolicy", Str),
    ("permissionsPolicy", Str),
    ("isDevelopment", Bool),
];

const FORWARD_AUTH: &[Field] = &[
    ("address", Str),
    ("tls", Struct(CLIENT_TLS)),
    ("trustForwardHeader", Bool),
    ("authResponseHeaders", List),
    ("authResponseHeadersRegex", Str),
    ("authRequestHeaders", List),
    ("addAuthCookiesToResponse", List),
    ("headerField", Str),
    ("forwardBody", Bool),
    ("maxBodySize", Int),
    ("preserveLocationHeader", Bool),
    ("preserveRequestMethod", Bool),
];

pub const MIDDLEWARE: &[Field] = &[
    ("addPrefix", Struct(&[("prefix", Str)])),
    ("basicAuth", Struct(AUTH)),
    ("digestAuth", Struct(AUTH)),
    (
        "buffering",
        Struct(&[
            ("maxRequestBodyBytes", Int),
            ("memRequestBodyBytes", Int),
            ("maxResponseBodyBytes", Int),
            ("memResponseBodyBytes", Int),
            ("retryExpression", Str),
        ]),
    ),
    ("chain", Struct(&[("middlewares", List)])),
    (
        "circuitBreaker",
        Struct(&[
            ("expression", Str),
            ("checkPeriod", Duration),
            ("fallbackDuration", Duration),
            ("recoveryDuration", Duration),
            ("responseCode", Int),
        ]),
    ),
    (
        "compress",
        Struct(&[
            ("excludedContentTypes", List),
            ("includedContentTypes", List),
            ("minResponseBodyBytes", Int),
            ("defaultEncoding", Str),
            ("encodings", List),
        ]),
    ),
    ("contentType", Struct(&[("autoDetect", Bool)])),
    (
        "errors",
        Struct(&[("status", List), ("service", Str), ("query", Str)]),
    ),
    ("forwardAuth", Struct(FORWARD_AUTH)),
    ("headers", Struct(HEADERS)),
    (
        "inFlightReq",
        Struct(&[
            ("amount", Int),
            ("sourceCriterion", Struct(SOURCE_CRITERION)),
        ]),
    ),
    (
        "ipAllowList",
        Struct(&[
            ("sourceRange", List),
            ("ipStrategy", Struct(IP_STRATEGY)),
            ("rejectStatusCode", Int),
        ]),
    ),
    (
        "rateLimit",
        Struct(&[
            ("average", Int),
            ("period", Duration),
            ("burst", Int),
            ("sourceCriterion", Struct(SOURCE_CRITERION)),
        ]),
    ),
    (
        "redirectRegex",
        Struct(&[("regex", Str), ("replacement", Str), ("permanent", Bool)]),
    ),
    (
        "redirectScheme",
        Struct(&[("scheme", Str), ("port", Str), ("permanent", Bool)]),
    ),
    ("replacePath", Struct(&[("path", Str)])),
    (
        "replacePathRegex",
        Struct(&[("regex", Str), ("replacement", Str)]),
    ),
    (
        "retry",
        Struct(&[("attempts", Int), ("initialInterval", Duration)]),
    ),
    (
        "stripPrefix",
        Struct(&[("prefixes", List), ("forceSlash", Bool)]),
    ),
    ("stripPrefixRegex", Struct(&[("regex", List)])),
];

pub const TCP_MIDDLEWARE: &[Field] = &[
    ("ipAllowList", Struct(&[("sourceRange", List)])),
    ("inFlightConn", Struct(&[("amount", Int)])),
];

/// Finds an option by its case-insensitive label spelling.
pub fn field(fields: &'static [Field], seg: &str) -> Option<&'static Field> {
    fields.iter().find(|(n, _)| n.eq_ignore_ascii_case(seg))
}
