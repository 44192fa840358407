//! The admin API (`/v3`, ImprovMX v3 compatible), route by route, through
//! the router in-process (`tower::ServiceExt::oneshot`, no socket): what
//! each route answers, in which shape, and the HTTP behaviour around them
//! (keys, rate limits, security headers, CORS, the OpenAPI document).

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::api::{
    Api, Auth, CLIENT, KEY, KEY2, activate_on_chain, assert_error, header, unix_now,
};
use common::dns::TestDns;
use serde_json::{Value, json};
use std::net::{IpAddr, Ipv4Addr};

const OTHER_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|item| {
            item.get("alias")
                .or_else(|| item.get("domain"))
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("no name in {item}"))
                .to_string()
        })
        .collect()
}

/// An API with `example.org` and 250 aliases `a000`..`a249` forwarding to
/// `user{i}@dest.test`.
async fn api_with_250_aliases() -> Api {
    let api = Api::new();
    api.add_domain("example.org").await;
    let items: Vec<Value> = (0..250)
        .map(|i| json!({ "alias": format!("a{i:03}"), "forward": format!("user{i}@dest.test") }))
        .collect();
    let added = api
        .ok(
            Method::POST,
            "/v3/domains/example.org/aliases/bulk",
            Some(json!({ "aliases": items })),
        )
        .await;
    assert_eq!(added["added"].as_array().unwrap().len(), 250, "{added}");
    api
}

// ------------------------------------------------------------------ keys

#[tokio::test]
async fn a_request_without_a_key_is_refused_with_401_and_www_authenticate() {
    let api = Api::new();
    let answer = api.call(Method::GET, "/v3/account", Auth::None, None).await;
    let message = assert_error(&answer, StatusCode::UNAUTHORIZED, "authorization");
    assert!(message.contains("API key"), "{message}");
    let www = header(&answer.1, "www-authenticate");
    assert!(www.starts_with("Basic realm="), "{www}");
}

#[tokio::test]
async fn a_wrong_key_is_refused_with_401() {
    let api = Api::new();
    let answer = api
        .call(Method::GET, "/v3/domains", Auth::Wrong, None)
        .await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "authorization");
    assert!(answer.1.contains_key("www-authenticate"));
    // A prefix of a valid key is not a valid key.
    let prefix = Auth::Header(format!("Bearer {}", &KEY[..10]));
    let answer = api.call(Method::GET, "/v3/domains", prefix, None).await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "authorization");
}

#[tokio::test]
async fn basic_base64_basic_literal_and_bearer_keys_are_all_accepted() {
    let api = Api::new();
    for auth in [
        Auth::Basic64,
        Auth::BasicRaw,
        Auth::Bearer,
        Auth::BearerOf(KEY2),
    ] {
        let (status, _, body) = api
            .call(Method::GET, "/v3/account", auth.clone(), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{auth:?}: {body}");
        assert_eq!(body["success"], true, "{auth:?}: {body}");
    }
}

#[tokio::test]
async fn the_authorization_scheme_is_case_insensitive() {
    use base64::Engine;
    let api = Api::new();
    let key = KEY;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("api:{key}"));
    for value in [
        format!("bearer {key}"),
        format!("BEARER {key}"),
        format!("basic {encoded}"),
        format!("BASIC api:{key}"),
    ] {
        let (status, _, body) = api
            .call(
                Method::GET,
                "/v3/account",
                Auth::Header(value.clone()),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{value}: {body}");
    }
}

#[tokio::test]
async fn a_basic_user_other_than_api_is_refused() {
    use base64::Engine;
    let api = Api::new();
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("admin:{}", KEY));
    for value in [
        format!("Basic {encoded}"),
        format!("Basic admin:{}", KEY),
        format!("Digest {}", KEY),
        KEY.to_string(),
    ] {
        let answer = api
            .call(
                Method::GET,
                "/v3/account",
                Auth::Header(value.clone()),
                None,
            )
            .await;
        assert_error(&answer, StatusCode::UNAUTHORIZED, "authorization");
    }
}

// --------------------------------------------------------------- account

#[tokio::test]
async fn the_account_shows_the_configured_limits() {
    let api = Api::with(|c| {
        c.aliases.max_destinations = 7;
        c.http.rate_limit.per_key = 120;
    });
    api.add_domain("example.org").await;
    let body = api.ok(Method::GET, "/v3/account", None).await;
    let account = &body["account"];
    let limits = &account["limits"];
    assert_eq!(limits["destinations"], 7, "{body}");
    assert_eq!(limits["ratelimit_per_minute"], 120, "{body}");
    assert_eq!(limits["ratelimit"], 2, "{body}");
    assert_eq!(
        limits["recipients_per_message"], api.config.smtp.max_recipients,
        "{body}"
    );
    assert_eq!(
        limits["message_size"], api.config.smtp.max_message_size.0,
        "{body}"
    );
    assert!(
        limits["domains"].is_null() && limits["aliases"].is_null(),
        "{body}"
    );
    assert_eq!(account["domains"], 1, "{body}");
    assert_eq!(account["premium"], true, "{body}");
    assert_eq!(account["company_name"], "relay.test", "{body}");
    assert!(account["plan"]["name"].is_string(), "{body}");
}

// --------------------------------------------------------------- domains

#[tokio::test]
async fn adding_a_domain_returns_it_normalized_and_static() {
    let api = Api::new();
    let (status, _, body) = api
        .json(
            Method::POST,
            "/v3/domains",
            &json!({ "domain": "Example.ORG." }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["success"], true);
    let domain = &body["domain"];
    assert_eq!(domain["domain"], "example.org", "{body}");
    assert_eq!(domain["display"], "example.org", "{body}");
    assert_eq!(domain["active"], true, "{body}");
    assert_eq!(domain["source"], "static", "{body}");
    assert_eq!(domain["aliases"], json!([]), "{body}");
    assert_eq!(domain["aliases_total"], 0, "{body}");
    assert!(domain["notification_email"].is_null(), "{body}");
    let added = domain["added"].as_u64().expect("added");
    assert!(added / 1000 <= unix_now() && added / 1000 + 60 >= unix_now());
}

#[tokio::test]
async fn adding_a_domain_with_settings_keeps_them() {
    let api = Api::new();
    let body = api
        .ok(
            Method::POST,
            "/v3/domains",
            Some(json!({
                "domain": "example.org",
                "notification_email": "ops@dest.test",
                "whitelabel": "mail.example.org",
            })),
        )
        .await;
    assert_eq!(body["domain"]["notification_email"], "ops@dest.test");
    assert_eq!(body["domain"]["whitelabel"], "mail.example.org");
}

#[tokio::test]
async fn adding_a_domain_with_a_refused_setting_leaves_no_domain_behind() {
    let api = Api::new();
    let answer = api
        .json(
            Method::POST,
            "/v3/domains",
            &json!({ "domain": "example.org", "notification_email": "not an email" }),
        )
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "notification_email");
    let answer = api.get("/v3/domains/example.org").await;
    assert_error(&answer, StatusCode::NOT_FOUND, "resource");
}

#[tokio::test]
async fn adding_a_domain_twice_is_a_conflict() {
    let api = Api::new();
    api.add_domain("example.org").await;
    let answer = api
        .json(
            Method::POST,
            "/v3/domains",
            &json!({ "domain": "EXAMPLE.org" }),
        )
        .await;
    let message = assert_error(&answer, StatusCode::CONFLICT, "domain");
    assert!(message.contains("example.org"), "{message}");
}

#[tokio::test]
async fn adding_an_invalid_domain_is_refused_on_the_domain_field() {
    let api = Api::new();
    for bad in ["", "not a domain", "[192.0.2.1]", "a..b", "-x.test"] {
        let answer = api
            .json(Method::POST, "/v3/domains", &json!({ "domain": bad }))
            .await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "domain");
    }
}

#[tokio::test]
async fn a_body_that_is_not_a_json_object_is_refused_on_the_body_field() {
    let api = Api::new();
    for body in ["{\"domain\": ", "[]", "\"example.org\"", ""] {
        let answer = api
            .call(Method::POST, "/v3/domains", Auth::Bearer, Some(body))
            .await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "body");
    }
    let body = api.ok(Method::GET, "/v3/domains", None).await;
    assert_eq!(body["total"], 0, "{body}");
}

/// ImprovMX clients read which field is wrong from the key of `errors`:
/// a missing, mistyped or unknown field is named there, with serde's
/// words (and no line/column: the key says where).
#[tokio::test]
async fn a_missing_mistyped_or_unknown_field_is_refused_on_that_field() {
    let api = Api::new();
    for (body, field, says) in [
        ("{}", "domain", "missing field `domain`"),
        ("{\"domain\": 5}", "domain", "invalid type: integer `5`"),
        ("{\"domain\": null}", "domain", "invalid type: null"),
        (
            "{\"domain\": \"example.org\", \"notification_email\": [1]}",
            "notification_email",
            "invalid type: sequence",
        ),
        (
            "{\"domain\": \"example.org\", \"colour\": \"red\"}",
            "colour",
            "unknown field `colour`",
        ),
        // A name that is not a plain field name is not echoed as a key.
        (
            "{\"domain\": \"example.org\", \"a b`\": 1}",
            "body",
            "unknown field",
        ),
    ] {
        let answer = api
            .call(Method::POST, "/v3/domains", Auth::Bearer, Some(body))
            .await;
        let message = assert_error(&answer, StatusCode::BAD_REQUEST, field);
        assert!(message.starts_with(says), "{body}: {message}");
        assert!(!message.contains("line 1"), "{message}");
    }
    // Nothing was added by any of them.
    let body = api.ok(Method::GET, "/v3/domains", None).await;
    assert_eq!(body["total"], 0, "{body}");
}

#[tokio::test]
async fn a_json_body_without_a_json_content_type_is_refused_on_the_body_field() {
    let api = Api::new();
    let request = Request::post("/v3/domains")
        .header("authorization", format!("Bearer {}", KEY))
        .header("content-type", "text/plain")
        .body(Body::from(json!({ "domain": "example.org" }).to_string()))
        .unwrap();
    let answer = api.send(CLIENT, request).await;
    let message = assert_error(&answer, StatusCode::BAD_REQUEST, "body");
    assert!(message.contains("Content-Type"), "{message}");
}

#[tokio::test]
async fn the_domain_list_filters_by_q_and_is_active_and_pages() {
    let api = Api::new();
    for d in ["alpha.test", "beta.test", "gamma.example", "delta.example"] {
        api.add_domain(d).await;
    }
    api.ok(
        Method::PUT,
        "/v3/domains/beta.test",
        Some(json!({ "active": false })),
    )
    .await;

    let all = api.ok(Method::GET, "/v3/domains", None).await;
    assert_eq!(all["total"], 4, "{all}");
    assert_eq!(all["page"], 1, "{all}");
    assert_eq!(all["limit"], 50, "{all}");
    assert_eq!(
        names(&all["domains"]),
        ["alpha.test", "beta.test", "delta.example", "gamma.example"]
    );

    let q = api.ok(Method::GET, "/v3/domains?q=TEST", None).await;
    assert_eq!(q["total"], 2, "{q}");
    assert_eq!(names(&q["domains"]), ["alpha.test", "beta.test"]);

    for active in ["1", "true"] {
        let on = api
            .ok(
                Method::GET,
                &format!("/v3/domains?is_active={active}"),
                None,
            )
            .await;
        assert_eq!(on["total"], 3, "{on}");
        assert!(!names(&on["domains"]).contains(&"beta.test".to_string()));
    }
    for inactive in ["0", "false"] {
        let off = api
            .ok(
                Method::GET,
                &format!("/v3/domains?is_active={inactive}"),
                None,
            )
            .await;
        assert_eq!(off["total"], 1, "{off}");
        assert_eq!(names(&off["domains"]), ["beta.test"]);
        assert_eq!(off["domains"][0]["active"], false);
    }
    let empty = api.ok(Method::GET, "/v3/domains?is_active=", None).await;
    assert_eq!(empty["total"], 4, "an empty filter is no filter: {empty}");

    let both = api
        .ok(Method::GET, "/v3/domains?q=example&is_active=1", None)
        .await;
    assert_eq!(names(&both["domains"]), ["delta.example", "gamma.example"]);

    let page = api
        .ok(Method::GET, "/v3/domains?page=2&limit=3", None)
        .await;
    assert_eq!(page["total"], 4, "{page}");
    assert_eq!(
        (page["page"].clone(), page["limit"].clone()),
        (json!(2), json!(3))
    );
    assert_eq!(names(&page["domains"]), ["gamma.example"]);

    let beyond = api.ok(Method::GET, "/v3/domains?page=9", None).await;
    assert_eq!(beyond["domains"], json!([]), "{beyond}");
    assert_eq!(beyond["total"], 4, "{beyond}");

    // Unknown parameters are ignored, as ImprovMX does.
    let other = api.ok(Method::GET, "/v3/domains?colour=red", None).await;
    assert_eq!(other["total"], 4, "{other}");
}

#[tokio::test]
async fn the_domain_list_refuses_an_is_active_that_is_not_a_boolean() {
    let api = Api::new();
    let answer = api.get("/v3/domains?is_active=maybe").await;
    let message = assert_error(&answer, StatusCode::BAD_REQUEST, "is_active");
    assert!(message.contains("maybe"), "{message}");
}

#[tokio::test]
async fn the_domain_list_clamps_limit_to_1_to_100_and_page_to_at_least_1() {
    let api = Api::new();
    api.add_domain("example.org").await;
    let big = api.ok(Method::GET, "/v3/domains?limit=1000", None).await;
    assert_eq!(big["limit"], 100, "{big}");
    let zero = api
        .ok(Method::GET, "/v3/domains?limit=0&page=0", None)
        .await;
    assert_eq!(zero["limit"], 1, "{zero}");
    assert_eq!(zero["page"], 1, "{zero}");
    assert_eq!(names(&zero["domains"]), ["example.org"]);
}

#[tokio::test]
async fn a_non_numeric_page_is_refused_with_400() {
    let api = Api::new();
    let (status, _, body) = api.get("/v3/domains?page=two").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn a_query_parameter_of_the_wrong_type_is_refused_in_the_error_shape() {
    let api = Api::new();
    api.add_domain("example.org").await;
    for (path, field) in [
        ("/v3/domains?page=two", "page"),
        ("/v3/domains?limit=-1", "limit"),
        ("/v3/domains/example.org/aliases?page=two", "page"),
        ("/v3/domains/example.org/logs?limit=x", "limit"),
    ] {
        let (status, headers, body) = api.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert!(
            header(&headers, "content-type").starts_with("application/json"),
            "{path}: {body}"
        );
        assert_eq!(body["success"], false, "{path}: {body}");
        assert_eq!(body["code"], 400, "{path}: {body}");
        // Keyed by the parameter at fault, as a body field is.
        let errors = body["errors"].as_object();
        assert!(
            errors.is_some_and(|e| e.len() == 1 && e.contains_key(field)),
            "{path}: {body}"
        );
    }
}

#[tokio::test]
async fn a_page_far_beyond_the_end_is_empty_but_keeps_the_total() {
    let api = Api::new();
    api.add_domain("example.org").await;
    api.add_alias("example.org", "hello", "u@dest.test").await;
    let huge = u64::MAX;
    let body = api
        .ok(
            Method::GET,
            &format!("/v3/domains?page={huge}&limit=100"),
            None,
        )
        .await;
    assert_eq!(body["domains"], json!([]), "{body}");
    assert_eq!(body["total"], 1, "{body}");
    let body = api
        .ok(
            Method::GET,
            &format!("/v3/domains/example.org/aliases?page={huge}&limit=100"),
            None,
        )
        .await;
    assert_eq!(body["aliases"], json!([]), "{body}");
    assert_eq!(body["total"], 1, "{body}");
}

#[tokio::test]
async fn a_log_page_far_beyond_the_end_is_empty() {
    let api = Api::new();
    api.add_domain("example.org").await;
    for path in [
        "/v3/domains/example.org/logs",
        "/v3/domains/example.org/logs/hello",
    ] {
        let body = api
            .ok(
                Method::GET,
                &format!("{path}?page={}&limit=100", u64::MAX),
                None,
            )
            .await;
        assert_eq!(body["logs"], json!([]), "{body}");
    }
}

#[tokio::test]
async fn one_domain_is_shown_with_its_first_aliases() {
    let api = Api::new();
    api.add_domain("example.org").await;
    api.add_alias("example.org", "hello", "u@dest.test").await;
    let body = api.ok(Method::GET, "/v3/domains/EXAMPLE.org", None).await;
    let domain = &body["domain"];
    assert_eq!(domain["domain"], "example.org", "{body}");
    assert_eq!(domain["aliases_total"], 1, "{body}");
    assert_eq!(domain["aliases"][0]["alias"], "hello", "{body}");
    assert_eq!(domain["aliases"][0]["forward"], "u@dest.test", "{body}");
}

#[tokio::test]
async fn a_domain_shows_at_most_20_aliases_but_counts_them_all() {
    let api = api_with_250_aliases().await;
    let body = api.ok(Method::GET, "/v3/domains/example.org", None).await;
    assert_eq!(body["domain"]["aliases"].as_array().unwrap().len(), 20);
    assert_eq!(body["domain"]["aliases_total"], 250);
}

#[tokio::test]
async fn an_unknown_domain_is_404_on_every_domain_route() {
    let api = Api::new();
    for (method, path) in [
        (Method::GET, "/v3/domains/nowhere.test"),
        (Method::DELETE, "/v3/domains/nowhere.test"),
        (Method::GET, "/v3/domains/nowhere.test/check"),
        (Method::GET, "/v3/domains/nowhere.test/aliases"),
        (Method::GET, "/v3/domains/nowhere.test/aliases/a"),
        (Method::DELETE, "/v3/domains/nowhere.test/aliases/a"),
        (Method::GET, "/v3/domains/nowhere.test/logs"),
        (Method::GET, "/v3/domains/nowhere.test/logs/a"),
    ] {
        let answer = api.call(method.clone(), path, Auth::Bearer, None).await;
        let message = assert_error(&answer, StatusCode::NOT_FOUND, "resource");
        assert_eq!(message, "domain nowhere.test not found", "{method} {path}");
    }
    let answer = api
        .json(
            Method::PUT,
            "/v3/domains/nowhere.test",
            &json!({ "active": false }),
        )
        .await;
    assert_error(&answer, StatusCode::NOT_FOUND, "resource");
    let answer = api
        .json(
            Method::POST,
            "/v3/domains/nowhere.test/aliases",
            &json!({ "alias": "a", "forward": "u@dest.test" }),
        )
        .await;
    assert_error(&answer, StatusCode::NOT_FOUND, "resource");
}

#[tokio::test]
async fn an_invalid_domain_in_a_path_is_400_on_the_domain_field() {
    let api = Api::new();
    let answer = api.get("/v3/domains/bad%20domain").await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "domain");
}

#[tokio::test]
async fn updating_a_domain_round_trips_its_settings_and_null_clears_them() {
    let api = Api::new();
    api.add_domain("example.org").await;
    let settings = json!({
        "notification_email": "ops@dest.test",
        "webhook": "https://hooks.dest.test/mail",
        "whitelabel": "mail.example.org",
        "active": false,
    });
    let body = api
        .ok(Method::PUT, "/v3/domains/example.org", Some(settings))
        .await;
    let shown = api.ok(Method::GET, "/v3/domains/example.org", None).await;
    for view in [&body["domain"], &shown["domain"]] {
        assert_eq!(view["notification_email"], "ops@dest.test", "{view}");
        assert_eq!(view["webhook"], "https://hooks.dest.test/mail", "{view}");
        assert_eq!(view["whitelabel"], "mail.example.org", "{view}");
        assert_eq!(view["active"], false, "{view}");
    }

    // Absent fields stay; null clears one.
    let body = api
        .ok(
            Method::PUT,
            "/v3/domains/example.org",
            Some(json!({ "webhook": null, "active": true })),
        )
        .await;
    let view = &body["domain"];
    assert!(view["webhook"].is_null(), "{view}");
    assert_eq!(view["notification_email"], "ops@dest.test", "{view}");
    assert_eq!(view["whitelabel"], "mail.example.org", "{view}");
    assert_eq!(view["active"], true, "{view}");
    let shown = api.ok(Method::GET, "/v3/domains/example.org", None).await;
    assert!(shown["domain"]["webhook"].is_null(), "{shown}");

    // An empty update changes nothing.
    let body = api
        .ok(Method::PUT, "/v3/domains/example.org", Some(json!({})))
        .await;
    assert_eq!(body["domain"]["notification_email"], "ops@dest.test");
}

#[tokio::test]
async fn updating_a_domain_refuses_bad_settings_and_unknown_fields() {
    let api = Api::new();
    api.add_domain("example.org").await;
    let path = "/v3/domains/example.org";
    let answer = api
        .json(
            Method::PUT,
            path,
            &json!({ "notification_email": "nobody" }),
        )
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "notification_email");
    let answer = api
        .json(Method::PUT, path, &json!({ "webhook": "ftp://x.test/" }))
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "webhook");
    let answer = api
        .json(Method::PUT, path, &json!({ "colour": "red" }))
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "colour");
    // A NUL (which a cluster's PostgreSQL cannot store: a 500 there) or
    // any control character, and a setting of unbounded length.
    let answer = api
        .json(
            Method::PUT,
            path,
            &json!({ "whitelabel": "mail\u{0}.x.test" }),
        )
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "whitelabel");
    let answer = api
        .json(
            Method::PUT,
            path,
            &json!({ "webhook": "https://x.test/\r\nX: y" }),
        )
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "webhook");
    let answer = api
        .json(
            Method::PUT,
            path,
            &json!({ "whitelabel": "a".repeat(5000) }),
        )
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "whitelabel");
    let answer = api
        .json(Method::PUT, path, &json!({ "active": "no" }))
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "active");
    let answer = api
        .call(Method::PUT, path, Auth::Bearer, Some("{\"active\":"))
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "body");
    // None of them changed anything.
    let shown = api.ok(Method::GET, path, None).await;
    assert!(shown["domain"]["notification_email"].is_null(), "{shown}");
    assert!(shown["domain"]["webhook"].is_null(), "{shown}");
    assert_eq!(shown["domain"]["active"], true, "{shown}");
}

#[tokio::test]
async fn deleting_a_domain_removes_it_and_its_aliases() {
    let api = Api::new();
    api.add_domain("example.org").await;
    api.add_alias("example.org", "hello", "u@dest.test").await;
    let body = api
        .ok(Method::DELETE, "/v3/domains/example.org", None)
        .await;
    assert_eq!(body, json!({ "success": true }));
    let answer = api.get("/v3/domains/example.org").await;
    assert_error(&answer, StatusCode::NOT_FOUND, "resource");
    let answer = api
        .call(
            Method::DELETE,
            "/v3/domains/example.org",
            Auth::Bearer,
            None,
        )
        .await;
    assert_error(&answer, StatusCode::NOT_FOUND, "resource");
    // Added again, it starts without the old aliases.
    let body = api.add_domain("example.org").await;
    assert_eq!(body["domain"]["aliases_total"], 0, "{body}");
    assert!(
        api.store
            .alias_get("example.org", "hello")
            .unwrap()
            .is_none()
    );
}

/// An API whose DNS lookups go to `dns` (a server on loopback).
fn api_on(dns: &TestDns) -> Api {
    let addr = dns.addr();
    Api::with(move |c| c.outbound.nameservers = vec![addr])
}

#[tokio::test]
async fn the_dns_check_answers_records_and_checks_and_is_invalid_without_records() {
    let dns = TestDns::start().await;
    let api = api_on(&dns);
    api.add_domain("example.org").await;
    let body = api
        .ok(Method::GET, "/v3/domains/example.org/check", None)
        .await;
    let records = &body["records"];
    for kind in [
        "mx", "spf", "dkim1", "dkim2", "dmarc", "valid", "error", "provider", "advanced",
    ] {
        assert!(records.get(kind).is_some(), "no records.{kind}: {body}");
    }
    let mx = &records["mx"];
    assert_eq!(mx["name"], "example.org", "{body}");
    assert!(
        mx["expected"].as_str().unwrap().contains("relay.test"),
        "{body}"
    );
    assert!(mx["values"].is_string(), "{body}");
    assert_eq!(mx["valid"], false, "{body}");
    // The alias domain needs no SPF of its own (mail leaves with SRS).
    assert!(
        records["spf"].is_null() || records["spf"]["valid"].is_boolean(),
        "{body}"
    );
    assert!(records["dkim1"].is_null(), "DKIM is off: {body}");
    assert_eq!(records["valid"], false, "{body}");
    assert!(
        records["error"]
            .as_str()
            .unwrap()
            .contains("MX example.org"),
        "{body}"
    );
    assert_eq!(records["advanced"], false, "{body}");
    let checks = body["checks"].as_array().expect("checks");
    assert!(!checks.is_empty(), "{body}");
    for check in checks {
        assert!(
            check["check"].is_string() && check["name"].is_string(),
            "{check}"
        );
        assert!(check["required"].is_boolean(), "{check}");
        let status = check["status"].as_str().unwrap();
        assert!(["missing", "dns_error"].contains(&status), "{check}");
    }
    assert!(dns.queries() > 0);
}

#[tokio::test]
async fn the_dns_check_says_dns_error_when_lookups_fail() {
    let dns = TestDns::start().await;
    for name in [
        "example.org",
        "relay.test",
        "_dmarc.example.org",
        "_dmarc.relay.test",
    ] {
        dns.servfail(name);
    }
    let api = api_on(&dns);
    api.add_domain("example.org").await;
    let body = api
        .ok(Method::GET, "/v3/domains/example.org/check", None)
        .await;
    assert_eq!(body["records"]["valid"], false, "{body}");
    assert_eq!(body["records"]["mx"]["valid"], false, "{body}");
    let checks = body["checks"].as_array().expect("checks");
    let mx = checks
        .iter()
        .find(|c| c["check"] == "MX" && c["name"] == "example.org")
        .unwrap_or_else(|| panic!("no MX check: {body}"));
    assert_eq!(mx["status"], "dns_error", "{body}");
    assert!(
        checks
            .iter()
            .all(|c| c["status"] == "dns_error" || c["status"] == "missing"),
        "{body}"
    );
}

#[tokio::test]
async fn the_dns_check_is_valid_when_the_records_are_published() {
    let dns = TestDns::start().await;
    dns.add_mx("example.org", 10, "relay.test");
    dns.add_mx("relay.test", 10, "relay.test");
    dns.add_a("relay.test", Ipv4Addr::new(192, 0, 2, 25));
    dns.add_txt("relay.test", "v=spf1 a:relay.test -all");
    dns.add_txt("_dmarc.example.org", "v=DMARC1; p=reject");
    dns.add_txt("_dmarc.relay.test", "v=DMARC1; p=quarantine");
    let api = api_on(&dns);
    api.add_domain("example.org").await;
    let body = api
        .ok(Method::GET, "/v3/domains/example.org/check", None)
        .await;
    let records = &body["records"];
    assert_eq!(records["mx"]["valid"], true, "{body}");
    assert_eq!(records["mx"]["values"], "10 relay.test", "{body}");
    assert_eq!(records["valid"], true, "{body}");
    assert!(records["error"].is_null(), "{body}");
}

#[tokio::test]
async fn the_dns_check_summarizes_the_domains_dmarc_record() {
    let dns = TestDns::start().await;
    dns.add_txt("_dmarc.example.org", "v=DMARC1; p=reject");
    let api = api_on(&dns);
    api.add_domain("example.org").await;
    let body = api
        .ok(Method::GET, "/v3/domains/example.org/check", None)
        .await;
    let in_checks = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "DMARC" && c["name"] == "_dmarc.example.org")
        .cloned()
        .unwrap_or_else(|| panic!("no DMARC check of the domain: {body}"));
    assert_eq!(in_checks["status"], "ok", "{body}");
    let dmarc = &body["records"]["dmarc"];
    assert!(dmarc.is_object(), "records.dmarc: {body}");
    assert_eq!(dmarc["valid"], true, "{body}");
    assert_eq!(dmarc["values"], in_checks["found"], "{body}");
}

// --------------------------------------------------------------- aliases

#[tokio::test]
async fn an_alias_is_created_shown_updated_and_deleted() {
    let api = Api::new();
    api.add_domain("example.org").await;
    let body = api
        .ok(
            Method::POST,
            "/v3/domains/example.org/aliases",
            Some(json!({ "alias": "Hello", "forward": "u@dest.test, v@dest.test" })),
        )
        .await;
    let alias = &body["alias"];
    assert_eq!(alias["alias"], "hello", "{body}");
    assert_eq!(alias["forward"], "u@dest.test,v@dest.test", "{body}");
    assert_eq!(alias["active"], true, "{body}");
    assert_eq!(alias["source"], "static", "{body}");
    assert!(alias["id"].is_u64() && alias["created"].is_u64(), "{body}");
    let id = alias["id"].clone();

    let shown = api
        .ok(Method::GET, "/v3/domains/example.org/aliases/HELLO", None)
        .await;
    assert_eq!(shown["alias"], *alias, "{shown}");

    let updated = api
        .ok(
            Method::PUT,
            "/v3/domains/example.org/aliases/hello",
            Some(json!({ "forward": "w@dest.test" })),
        )
        .await;
    assert_eq!(updated["alias"]["forward"], "w@dest.test", "{updated}");
    assert_eq!(updated["alias"]["id"], id, "the id is stable: {updated}");
    let shown = api
        .ok(Method::GET, "/v3/domains/example.org/aliases/hello", None)
        .await;
    assert_eq!(shown["alias"]["forward"], "w@dest.test", "{shown}");

    let deleted = api
        .ok(
            Method::DELETE,
            "/v3/domains/example.org/aliases/hello",
            None,
        )
        .await;
    assert_eq!(deleted, json!({ "success": true }));
    for method in [Method::GET, Method::DELETE] {
        let answer = api
            .call(
                method,
                "/v3/domains/example.org/aliases/hello",
                Auth::Bearer,
                None,
            )
            .await;
        let message = assert_error(&answer, StatusCode::NOT_FOUND, "resource");
        assert_eq!(message, "alias hello@example.org not found");
    }
}

#[tokio::test]
async fn the_catch_all_alias_is_accepted() {
    let api = Api::new();
    api.add_domain("example.org").await;
    let body = api.add_alias("example.org", "*", "u@dest.test").await;
    assert_eq!(body["alias"]["alias"], "*");
    let shown = api
        .ok(Method::GET, "/v3/domains/example.org/aliases/*", None)
        .await;
    assert_eq!(shown["alias"]["forward"], "u@dest.test");
}

#[tokio::test]
async fn updating_an_alias_that_does_not_exist_is_404() {
    let api = Api::new();
    api.add_domain("example.org").await;
    let answer = api
        .json(
            Method::PUT,
            "/v3/domains/example.org/aliases/nobody",
            &json!({ "forward": "u@dest.test" }),
        )
        .await;
    assert_error(&answer, StatusCode::NOT_FOUND, "resource");
    assert!(
        api.store
            .alias_get("example.org", "nobody")
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn creating_an_alias_twice_is_a_conflict() {
    let api = Api::new();
    api.add_domain("example.org").await;
    api.add_alias("example.org", "hello", "u@dest.test").await;
    let answer = api
        .json(
            Method::POST,
            "/v3/domains/example.org/aliases",
            &json!({ "alias": "HELLO", "forward": "other@dest.test" }),
        )
        .await;
    let message = assert_error(&answer, StatusCode::CONFLICT, "alias");
    assert!(message.contains("hello@example.org"), "{message}");
    let shown = api
        .ok(Method::GET, "/v3/domains/example.org/aliases/hello", None)
        .await;
    assert_eq!(shown["alias"]["forward"], "u@dest.test", "unchanged");
}

#[tokio::test]
async fn an_invalid_alias_name_is_refused_on_the_alias_field() {
    let api = Api::new();
    api.add_domain("example.org").await;
    let long = "a".repeat(65);
    for bad in [
        "bad alias",
        ".x",
        "x.",
        "a..b",
        "a@b",
        "",
        "ä",
        long.as_str(),
    ] {
        let answer = api
            .json(
                Method::POST,
                "/v3/domains/example.org/aliases",
                &json!({ "alias": bad, "forward": "u@dest.test" }),
            )
            .await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "alias");
    }
    // In the path as well.
    let answer = api.get("/v3/domains/example.org/aliases/bad%20alias").await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "alias");
    let body = api
        .ok(Method::GET, "/v3/domains/example.org/aliases", None)
        .await;
    assert_eq!(body["total"], 0, "{body}");
}

#[tokio::test]
async fn a_forward_that_is_not_a_plain_email_address_is_refused_on_the_forward_field() {
    let api = Api::new();
    api.add_domain("example.org").await;
    for bad in [
        "not-an-address",
        "",
        " , ",
        "u@",
        "@dest.test",
        "u@dest.test, nobody",
        "u%v@dest.test",
    ] {
        let answer = api
            .json(
                Method::POST,
                "/v3/domains/example.org/aliases",
                &json!({ "alias": "hello", "forward": bad }),
            )
            .await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "forward");
    }
}

#[tokio::test]
async fn a_forward_at_a_domain_the_relay_serves_is_refused_as_a_loop() {
    let api = Api::new();
    api.add_domain("example.org").await;
    api.add_domain("other.test").await;
    for forward in ["me@example.org", "me@OTHER.test"] {
        let answer = api
            .json(
                Method::POST,
                "/v3/domains/example.org/aliases",
                &json!({ "alias": "hello", "forward": forward }),
            )
            .await;
        let message = assert_error(&answer, StatusCode::BAD_REQUEST, "forward");
        assert!(message.contains("loop"), "{message}");
    }
}

#[tokio::test]
async fn more_forwards_than_max_destinations_are_refused() {
    let api = Api::with(|c| c.aliases.max_destinations = 3);
    api.add_domain("example.org").await;
    let three = "a@dest.test,b@dest.test,c@dest.test";
    api.add_alias("example.org", "three", three).await;
    let answer = api
        .json(
            Method::POST,
            "/v3/domains/example.org/aliases",
            &json!({ "alias": "four", "forward": format!("{three},d@dest.test") }),
        )
        .await;
    let message = assert_error(&answer, StatusCode::BAD_REQUEST, "forward");
    assert!(message.contains('3'), "{message}");
    let answer = api
        .json(
            Method::PUT,
            "/v3/domains/example.org/aliases/three",
            &json!({ "forward": format!("{three},d@dest.test") }),
        )
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "forward");
}

#[tokio::test]
async fn an_alias_body_with_unknown_missing_or_mistyped_fields_is_refused_on_that_field() {
    let api = Api::new();
    api.add_domain("example.org").await;
    for (body, field) in [
        (
            json!({ "alias": "hello", "forward": "u@dest.test", "colour": "red" }),
            "colour",
        ),
        (json!({ "alias": "hello" }), "forward"),
        (json!({ "forward": "u@dest.test" }), "alias"),
        (
            json!({ "alias": "hello", "forward": ["u@dest.test"] }),
            "forward",
        ),
    ] {
        let answer = api
            .json(Method::POST, "/v3/domains/example.org/aliases", &body)
            .await;
        assert_error(&answer, StatusCode::BAD_REQUEST, field);
    }
    assert!(
        api.store
            .alias_get("example.org", "hello")
            .unwrap()
            .is_none()
    );
    api.add_alias("example.org", "hello", "u@dest.test").await;
    let answer = api
        .json(
            Method::PUT,
            "/v3/domains/example.org/aliases/hello",
            &json!({ "forward": "v@dest.test", "alias": "other" }),
        )
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "alias");
}

#[tokio::test]
async fn the_alias_list_pages_in_name_order_with_the_total() {
    let api = api_with_250_aliases().await;
    let first = api
        .ok(Method::GET, "/v3/domains/example.org/aliases", None)
        .await;
    assert_eq!(first["total"], 250, "{first}");
    assert_eq!(first["limit"], 50);
    assert_eq!(first["page"], 1);
    let first_names = names(&first["aliases"]);
    assert_eq!(first_names.len(), 50);
    assert_eq!(first_names[0], "a000");
    assert_eq!(first_names[49], "a049");

    let third = api
        .ok(
            Method::GET,
            "/v3/domains/example.org/aliases?page=3&limit=100",
            None,
        )
        .await;
    assert_eq!(third["total"], 250);
    assert_eq!(third["page"], 3);
    assert_eq!(third["limit"], 100);
    let third_names = names(&third["aliases"]);
    let expected: Vec<String> = (200..250).map(|i| format!("a{i:03}")).collect();
    assert_eq!(third_names, expected);
    assert_eq!(third["aliases"][0]["forward"], "user200@dest.test");

    let clamped = api
        .ok(
            Method::GET,
            "/v3/domains/example.org/aliases?limit=500",
            None,
        )
        .await;
    assert_eq!(clamped["limit"], 100);
    assert_eq!(clamped["aliases"].as_array().unwrap().len(), 100);

    let beyond = api
        .ok(
            Method::GET,
            "/v3/domains/example.org/aliases?page=4&limit=100",
            None,
        )
        .await;
    assert_eq!(beyond["aliases"], json!([]));
    assert_eq!(beyond["total"], 250);
}

#[tokio::test]
async fn the_alias_list_filters_by_alias_prefix_and_by_q_in_names_and_forwards() {
    let api = api_with_250_aliases().await;
    let prefix = api
        .ok(
            Method::GET,
            "/v3/domains/example.org/aliases?alias=A01",
            None,
        )
        .await;
    assert_eq!(prefix["total"], 10, "{prefix}");
    let expected: Vec<String> = (10..20).map(|i| format!("a{i:03}")).collect();
    assert_eq!(names(&prefix["aliases"]), expected);

    // A prefix, not a substring.
    let inner = api
        .ok(
            Method::GET,
            "/v3/domains/example.org/aliases?alias=01",
            None,
        )
        .await;
    assert_eq!(inner["total"], 0, "{inner}");

    let by_forward = api
        .ok(
            Method::GET,
            "/v3/domains/example.org/aliases?q=USER7@",
            None,
        )
        .await;
    assert_eq!(by_forward["total"], 1, "{by_forward}");
    assert_eq!(names(&by_forward["aliases"]), ["a007"]);

    let by_name = api
        .ok(Method::GET, "/v3/domains/example.org/aliases?q=a24", None)
        .await;
    assert_eq!(by_name["total"], 10, "{by_name}");

    let both = api
        .ok(
            Method::GET,
            "/v3/domains/example.org/aliases?alias=a1&q=user15",
            None,
        )
        .await;
    // a150..a159 forward to user150..user159; a015 forwards to user15@.
    assert_eq!(both["total"], 10, "{both}");

    let paged = api
        .ok(
            Method::GET,
            "/v3/domains/example.org/aliases?q=user1&limit=5&page=2",
            None,
        )
        .await;
    // user1, user10..19, user100..199: 111 matches.
    assert_eq!(paged["total"], 111, "{paged}");
    assert_eq!(
        names(&paged["aliases"]),
        ["a014", "a015", "a016", "a017", "a018"]
    );
}

// ------------------------------------------------------------------ bulk

#[tokio::test]
async fn bulk_add_reports_added_skipped_and_failed_item_by_item() {
    let api = Api::new();
    api.add_domain("example.org").await;
    api.add_alias("example.org", "existing", "old@dest.test")
        .await;
    let body = api
        .ok(
            Method::POST,
            "/v3/domains/example.org/aliases/bulk",
            Some(json!({
                "behavior": "add",
                "aliases": [
                    { "alias": "new", "forward": "n@dest.test" },
                    { "alias": "existing", "forward": "changed@dest.test" },
                    { "alias": "bad alias", "forward": "b@dest.test" },
                    { "alias": "badforward", "forward": "nobody" },
                    { "alias": "NEW", "forward": "again@dest.test" },
                ],
            })),
        )
        .await;
    assert_eq!(names(&body["added"]), ["new"], "{body}");
    assert_eq!(body["added"][0]["forward"], "n@dest.test");
    assert_eq!(names(&body["skipped"]), ["existing"], "{body}");
    assert_eq!(body["skipped"][0]["forward"], "old@dest.test", "unchanged");
    assert_eq!(body["updated"], json!([]), "{body}");
    let failed = body["failed"].as_array().expect("failed");
    assert_eq!(failed.len(), 3, "{body}");
    assert_eq!(failed[0]["alias"], "bad alias");
    assert_eq!(failed[0]["forward"], "b@dest.test");
    assert!(failed[0]["errors"]["alias"][0].is_string(), "{body}");
    assert_eq!(failed[1]["alias"], "badforward");
    assert!(failed[1]["errors"]["forward"][0].is_string(), "{body}");
    assert_eq!(failed[2]["alias"], "NEW");
    let twice = failed[2]["errors"]["alias"][0].as_str().unwrap();
    assert!(twice.contains("twice"), "{twice}");

    let list = api
        .ok(Method::GET, "/v3/domains/example.org/aliases", None)
        .await;
    assert_eq!(names(&list["aliases"]), ["existing", "new"]);
    assert_eq!(list["aliases"][1]["forward"], "n@dest.test");
}

#[tokio::test]
async fn bulk_behavior_defaults_to_add() {
    let api = Api::new();
    api.add_domain("example.org").await;
    api.add_alias("example.org", "existing", "old@dest.test")
        .await;
    let body = api
        .ok(
            Method::POST,
            "/v3/domains/example.org/aliases/bulk",
            Some(json!({ "aliases": [{ "alias": "existing", "forward": "x@dest.test" }] })),
        )
        .await;
    assert_eq!(names(&body["skipped"]), ["existing"], "{body}");
}

#[tokio::test]
async fn bulk_update_creates_or_replaces() {
    let api = Api::new();
    api.add_domain("example.org").await;
    api.add_alias("example.org", "existing", "old@dest.test")
        .await;
    let body = api
        .ok(
            Method::POST,
            "/v3/domains/example.org/aliases/bulk",
            Some(json!({
                "behavior": "update",
                "aliases": [
                    { "alias": "existing", "forward": "changed@dest.test" },
                    { "alias": "fresh", "forward": "f@dest.test" },
                    { "alias": "loop", "forward": "me@example.org" },
                ],
            })),
        )
        .await;
    assert_eq!(names(&body["updated"]), ["existing"], "{body}");
    assert_eq!(body["updated"][0]["forward"], "changed@dest.test");
    assert_eq!(names(&body["added"]), ["fresh"], "{body}");
    assert_eq!(body["skipped"], json!([]), "{body}");
    assert_eq!(names(&body["failed"]), ["loop"], "{body}");
    assert!(body["failed"][0]["errors"]["forward"][0].is_string());
    let shown = api
        .ok(
            Method::GET,
            "/v3/domains/example.org/aliases/existing",
            None,
        )
        .await;
    assert_eq!(shown["alias"]["forward"], "changed@dest.test");
}

#[tokio::test]
async fn bulk_refuses_an_unknown_behavior_and_unknown_fields() {
    let api = Api::new();
    api.add_domain("example.org").await;
    let item = json!({ "alias": "a", "forward": "u@dest.test" });
    for (body, field) in [
        (
            json!({ "behavior": "delete", "aliases": [item.clone()] }),
            "behavior",
        ),
        (
            json!({ "aliases": [item.clone()], "colour": "red" }),
            "colour",
        ),
        (
            json!({ "aliases": [item.clone(), { "alias": "a", "forward": "u@dest.test", "x": 1 }] }),
            "aliases[1].x",
        ),
        (
            json!({ "aliases": [{ "alias": "b" }] }),
            "aliases[0].forward",
        ),
        (json!({ "behavior": "add" }), "aliases"),
    ] {
        let answer = api
            .json(Method::POST, "/v3/domains/example.org/aliases/bulk", &body)
            .await;
        assert_error(&answer, StatusCode::BAD_REQUEST, field);
    }
    assert!(api.store.alias_get("example.org", "a").unwrap().is_none());
}

#[tokio::test]
async fn bulk_refuses_more_than_1000_items() {
    let api = Api::new();
    api.add_domain("example.org").await;
    let items: Vec<Value> = (0..1001)
        .map(|i| json!({ "alias": format!("a{i}"), "forward": "u@dest.test" }))
        .collect();
    let answer = api
        .json(
            Method::POST,
            "/v3/domains/example.org/aliases/bulk",
            &json!({ "aliases": items }),
        )
        .await;
    let message = assert_error(&answer, StatusCode::BAD_REQUEST, "aliases");
    assert!(message.contains("1000"), "{message}");
    let list = api
        .ok(Method::GET, "/v3/domains/example.org/aliases", None)
        .await;
    assert_eq!(list["total"], 0, "nothing written: {list}");
    // Exactly 1000 is allowed.
    let body = api
        .ok(
            Method::POST,
            "/v3/domains/example.org/aliases/bulk",
            Some(json!({ "aliases": items[..1000] })),
        )
        .await;
    assert_eq!(body["added"].as_array().unwrap().len(), 1000);
}

#[tokio::test]
async fn bulk_on_an_unknown_domain_is_404() {
    let api = Api::new();
    let answer = api
        .json(
            Method::POST,
            "/v3/domains/nowhere.test/aliases/bulk",
            &json!({ "aliases": [] }),
        )
        .await;
    assert_error(&answer, StatusCode::NOT_FOUND, "resource");
}

#[tokio::test]
async fn import_adds_domains_and_aliases_from_lines() {
    let api = Api::new();
    let text = "# comment\nhello@one.test\tu@dest.test\nbye@two.test v@dest.test,w@dest.test\n";
    let (status, _, body) = api
        .call(Method::POST, "/v3/aliases/import", Auth::Bearer, Some(text))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({ "imported": 2, "success": true }));
    let shown = api
        .ok(Method::GET, "/v3/domains/two.test/aliases/bye", None)
        .await;
    assert_eq!(shown["alias"]["forward"], "v@dest.test,w@dest.test");

    let answer = api
        .call(
            Method::POST,
            "/v3/aliases/import",
            Auth::Bearer,
            Some("ok@three.test\tu@dest.test\nbroken\n"),
        )
        .await;
    let message = assert_error(&answer, StatusCode::BAD_REQUEST, "line 2");
    assert!(message.contains("alias@domain"), "{message}");
    let answer = api.get("/v3/domains/three.test").await;
    assert_error(&answer, StatusCode::NOT_FOUND, "resource");
}

// ------------------------------------------------- chain-governed domains

/// An API with `hello@name.country` activated on the chain.
async fn api_with_chain_alias() -> Api {
    let api = Api::new();
    activate_on_chain(&api.store, "name", "hello", "owner@dest.test");
    api
}

#[tokio::test]
async fn a_chain_governed_alias_is_shown_with_source_chain() {
    let api = api_with_chain_alias().await;
    let shown = api
        .ok(Method::GET, "/v3/domains/name.country/aliases/hello", None)
        .await;
    let alias = &shown["alias"];
    assert_eq!(alias["source"], "chain", "{shown}");
    assert_eq!(alias["forward"], "owner@dest.test", "{shown}");
    assert_eq!(alias["active"], true, "{shown}");
    let domain = api.ok(Method::GET, "/v3/domains/name.country", None).await;
    assert_eq!(domain["domain"]["source"], "chain", "{domain}");
    let list = api
        .ok(Method::GET, "/v3/domains/name.country/aliases", None)
        .await;
    assert_eq!(names(&list["aliases"]), ["hello"]);
}

#[tokio::test]
async fn creating_or_updating_an_alias_of_a_chain_governed_domain_is_a_conflict() {
    let api = api_with_chain_alias().await;
    let answer = api
        .json(
            Method::POST,
            "/v3/domains/name.country/aliases",
            &json!({ "alias": "other", "forward": "u@dest.test" }),
        )
        .await;
    let message = assert_error(&answer, StatusCode::CONFLICT, "alias");
    assert!(message.contains("governed by the chain"), "{message}");
    let answer = api
        .json(
            Method::PUT,
            "/v3/domains/name.country/aliases/hello",
            &json!({ "forward": "thief@dest.test" }),
        )
        .await;
    let message = assert_error(&answer, StatusCode::CONFLICT, "alias");
    assert!(message.contains("governed by the chain"), "{message}");
    let answer = api
        .json(
            Method::POST,
            "/v3/domains/name.country/aliases/bulk",
            &json!({ "behavior": "update", "aliases": [{ "alias": "hello", "forward": "thief@dest.test" }] }),
        )
        .await;
    assert_error(&answer, StatusCode::CONFLICT, "alias");
    let answer = api
        .call(
            Method::POST,
            "/v3/aliases/import",
            Auth::Bearer,
            Some("hello@name.country\tthief@dest.test\n"),
        )
        .await;
    assert_error(&answer, StatusCode::CONFLICT, "domain");
    let shown = api
        .ok(Method::GET, "/v3/domains/name.country/aliases/hello", None)
        .await;
    assert_eq!(shown["alias"]["forward"], "owner@dest.test", "unchanged");
    assert!(
        api.store
            .alias_get("name.country", "other")
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn deleting_a_chain_governed_alias_suspends_it() {
    let api = api_with_chain_alias().await;
    let body = api
        .ok(
            Method::DELETE,
            "/v3/domains/name.country/aliases/hello",
            None,
        )
        .await;
    assert_eq!(body, json!({ "suspended": true, "success": true }));
    let shown = api
        .ok(Method::GET, "/v3/domains/name.country/aliases/hello", None)
        .await;
    assert_eq!(shown["alias"]["active"], false, "{shown}");
    assert_eq!(shown["alias"]["source"], "chain", "{shown}");
    assert_eq!(shown["alias"]["forward"], "owner@dest.test", "{shown}");
    let answer = api
        .call(
            Method::DELETE,
            "/v3/domains/name.country/aliases/nobody",
            Auth::Bearer,
            None,
        )
        .await;
    assert_error(&answer, StatusCode::NOT_FOUND, "resource");
}

#[tokio::test]
async fn deleting_a_chain_governed_domain_is_a_conflict() {
    let api = api_with_chain_alias().await;
    let answer = api
        .call(
            Method::DELETE,
            "/v3/domains/name.country",
            Auth::Bearer,
            None,
        )
        .await;
    let message = assert_error(&answer, StatusCode::CONFLICT, "domain");
    assert!(message.contains("governed by the chain"), "{message}");
    api.ok(Method::GET, "/v3/domains/name.country", None).await;
}

// ------------------------------------------------------------------ logs

#[tokio::test]
async fn the_logs_of_a_domain_without_traffic_are_empty() {
    let api = Api::new();
    api.add_domain("example.org").await;
    let body = api
        .ok(Method::GET, "/v3/domains/example.org/logs", None)
        .await;
    assert_eq!(body["logs"], json!([]), "{body}");
    assert_eq!(body["page"], 1, "{body}");
    assert_eq!(body["limit"], 50, "{body}");
    let body = api
        .ok(
            Method::GET,
            "/v3/domains/example.org/logs/hello?limit=500&page=2",
            None,
        )
        .await;
    assert_eq!(body["logs"], json!([]), "{body}");
    assert_eq!(body["limit"], 100, "{body}");
    assert_eq!(body["page"], 2, "{body}");
}

#[tokio::test]
async fn the_logs_of_an_invalid_alias_are_400() {
    let api = Api::new();
    api.add_domain("example.org").await;
    let answer = api.get("/v3/domains/example.org/logs/bad%20alias").await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "alias");
    let answer = api.get("/v3/domains/example.org/logs/.x").await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "alias");
}

#[tokio::test]
async fn the_logs_of_an_unknown_domain_are_404() {
    let api = Api::new();
    let answer = api.get("/v3/domains/nowhere.test/logs").await;
    assert_error(&answer, StatusCode::NOT_FOUND, "resource");
}

// ----------------------------------------------------------------- queue

#[tokio::test]
async fn an_empty_queue_is_listed_as_empty() {
    let api = Api::new();
    let body = api.ok(Method::GET, "/v3/queue", None).await;
    assert_eq!(body, json!({ "queue": [], "total": 0, "success": true }));
    let body = api.ok(Method::POST, "/v3/queue/retry", None).await;
    assert_eq!(body, json!({ "retried": 0, "success": true }));
}

#[tokio::test]
async fn a_queue_id_that_is_not_16_hex_digits_is_400() {
    let api = Api::new();
    for (method, path) in [
        (Method::GET, "/v3/queue/zzz"),
        (Method::DELETE, "/v3/queue/zzz"),
        (Method::POST, "/v3/queue/zzz/retry"),
        (Method::GET, "/v3/queue/000000000000000G"),
        (Method::GET, "/v3/queue/00000000000000001"),
    ] {
        let answer = api.call(method, path, Auth::Bearer, None).await;
        let message = assert_error(&answer, StatusCode::BAD_REQUEST, "id");
        assert!(message.contains("16 hex"), "{path}: {message}");
    }
}

#[tokio::test]
async fn an_unknown_queue_id_is_404() {
    let api = Api::new();
    for (method, path) in [
        (Method::GET, "/v3/queue/0000000000000001"),
        (Method::GET, "/v3/queue/00000000000000ab"),
        (Method::DELETE, "/v3/queue/0000000000000001"),
        (Method::POST, "/v3/queue/0000000000000001/retry"),
    ] {
        let answer = api.call(method, path, Auth::Bearer, None).await;
        let message = assert_error(&answer, StatusCode::NOT_FOUND, "resource");
        assert!(message.starts_with("message "), "{path}: {message}");
    }
}

// ----------------------------------------------------------------- chain

#[tokio::test]
async fn the_chain_status_says_disabled_when_the_chain_is_off() {
    let api = Api::new();
    let body = api.ok(Method::GET, "/v3/chain/status", None).await;
    assert_eq!(
        body,
        json!({ "chain": { "enabled": false }, "success": true })
    );
}

#[tokio::test]
async fn a_resync_is_a_conflict_when_the_chain_is_off() {
    let api = Api::new();
    for body in [None, Some("{\"from_block\": 5}")] {
        let answer = api
            .call(Method::POST, "/v3/chain/resync", Auth::Bearer, body)
            .await;
        let message = assert_error(&answer, StatusCode::CONFLICT, "chain");
        assert!(message.contains("chain.enabled"), "{message}");
    }
    let answer = api
        .call(
            Method::POST,
            "/v3/chain/resync",
            Auth::Bearer,
            Some("{\"from_block\": \"x\"}"),
        )
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "from_block");
}

#[tokio::test]
async fn the_eas_endpoints_are_503_when_the_chain_is_off() {
    let api = Api::new();
    let sig = format!("0x{}", "22".repeat(65));
    for (path, body) in [
        (
            "/activate",
            json!({ "alias": "hello", "sld": "name", "forwardAddress": "u@dest.test", "signature": sig }),
        ),
        ("/deactivate", json!({ "alias": "hello", "sld": "name" })),
        ("/deactivate-all", json!({ "sld": "name" })),
        ("/check-alias", json!({ "alias": "hello", "sld": "name" })),
    ] {
        // No admin key: these are the EAS frontend's endpoints.
        let (status, _, answer) = api
            .call(Method::POST, path, Auth::None, Some(&body.to_string()))
            .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {answer}");
        assert!(answer["error"].is_string(), "{path}: {answer}");
    }
}

#[tokio::test]
async fn the_eas_endpoints_refuse_malformed_json_with_400() {
    let api = Api::new();
    for path in [
        "/activate",
        "/deactivate",
        "/deactivate-all",
        "/check-alias",
    ] {
        for body in ["{\"alias\":", "{}", "[1]"] {
            let (status, _, answer) = api.call(Method::POST, path, Auth::None, Some(body)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {answer}");
            let error = answer["error"].as_str().unwrap_or_default();
            assert!(error.contains("JSON"), "{path} {body}: {answer}");
        }
    }
}

// ------------------------------------------------------ health, metrics

#[tokio::test]
async fn health_and_metrics_need_no_key() {
    let api = Api::new();
    let (status, _, body) = api.call(Method::GET, "/health", Auth::None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["queue"], 0, "{body}");
    assert_eq!(body["chain"]["enabled"], false, "{body}");
    assert!(body["version"].is_string(), "{body}");
    let (status, headers, body) = api.call(Method::GET, "/metrics", Auth::None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        header(&headers, "content-type").starts_with("text/plain"),
        "{headers:?}"
    );
    assert!(body.is_string() || body.is_null(), "not JSON: {body}");
}

// --------------------------------------------------------------- openapi

#[tokio::test]
async fn the_openapi_document_is_served_without_a_key() {
    let api = Api::new();
    let (status, headers, doc) = api
        .call(Method::GET, "/v3/openapi.json", Auth::None, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert!(header(&headers, "content-type").starts_with("application/json"));
    assert_eq!(doc["openapi"], "3.0.3", "{doc}");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(doc["paths"].as_object().is_some_and(|p| p.len() > 15));
}

#[tokio::test]
async fn every_route_in_the_openapi_document_is_served() {
    let dns = TestDns::start().await;
    let api = api_on(&dns);
    api.add_domain("example.org").await;
    api.add_alias("example.org", "hello", "u@dest.test").await;
    let (_, _, doc) = api
        .call(Method::GET, "/v3/openapi.json", Auth::None, None)
        .await;
    let paths = doc["paths"].as_object().expect("paths");
    let mut served = 0;
    // Deletions last, so that the others find what they name.
    let mut routes: Vec<(Method, String)> = Vec::new();
    for (path, item) in paths {
        for method in item.as_object().expect("path item").keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            routes.push((method, path.clone()));
        }
    }
    routes.sort_by_key(|(m, _)| *m == Method::DELETE);
    for (method, template) in routes {
        let path = template
            .replace("{domain}", "example.org")
            .replace("{alias}", "hello")
            .replace("{id}", "0000000000000001");
        assert!(!path.contains('{'), "unfilled parameter in {template}");
        let body = matches!(method, Method::POST | Method::PUT).then_some("{}");
        let (status, _, answer) = api.call(method.clone(), &path, Auth::Bearer, body).await;
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {template} is documented but not routed"
        );
        assert!(
            !(status == StatusCode::NOT_FOUND
                && answer["errors"]["resource"][0] == "route not found"),
            "{method} {template} is documented but not routed: {answer}"
        );
        served += 1;
    }
    assert!(served > 25, "only {served} routes in the document");
}

// ------------------------------------------------------------ rate limits

#[tokio::test]
async fn the_per_key_limit_counts_down_then_refuses_with_429_and_retry_after() {
    let api = Api::with(|c| {
        c.http.rate_limit.per_key = 3;
        c.http.rate_limit.per_ip = 0;
    });
    let start = unix_now();
    for remaining in ["2", "1", "0"] {
        let (status, headers, body) = api.get("/v3/account").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(header(&headers, "x-ratelimit-limit"), "3");
        assert_eq!(header(&headers, "x-ratelimit-remaining"), remaining);
        let reset: u64 = header(&headers, "x-ratelimit-reset").parse().unwrap();
        assert!(reset >= start && reset <= unix_now() + 61, "reset {reset}");
    }
    let answer = api.get("/v3/domains").await;
    let message = assert_error(&answer, StatusCode::TOO_MANY_REQUESTS, "rate_limit");
    let headers = &answer.1;
    let retry: u64 = header(headers, "retry-after").parse().unwrap();
    assert!((1..=20).contains(&retry), "retry-after {retry}");
    assert!(message.contains(&retry.to_string()), "{message}");
    assert_eq!(header(headers, "x-ratelimit-limit"), "3");
    assert_eq!(header(headers, "x-ratelimit-remaining"), "0");
    let reset: u64 = header(headers, "x-ratelimit-reset").parse().unwrap();
    assert!(reset >= unix_now() + 55, "reset {reset}");

    // The same key by another form, from another address: same budget.
    let answer = api
        .call_from(
            OTHER_CLIENT,
            Method::GET,
            "/v3/account",
            Auth::Basic64,
            None,
        )
        .await;
    assert_error(&answer, StatusCode::TOO_MANY_REQUESTS, "rate_limit");
    // Another key has its own budget.
    let (status, headers, _) = api
        .call(Method::GET, "/v3/account", Auth::BearerOf(KEY2), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "x-ratelimit-remaining"), "2");
    // Refused keys are not charged to a key budget: still 401.
    let answer = api
        .call(Method::GET, "/v3/account", Auth::Wrong, None)
        .await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "authorization");
}

#[tokio::test]
async fn the_per_ip_limit_counts_unauthenticated_requests_and_each_ip_has_its_own_budget() {
    let api = Api::with(|c| {
        c.http.rate_limit.per_key = 0;
        c.http.rate_limit.per_ip = 2;
    });
    for remaining in ["1", "0"] {
        let answer = api.call(Method::GET, "/v3/account", Auth::None, None).await;
        assert_error(&answer, StatusCode::UNAUTHORIZED, "authorization");
        assert_eq!(header(&answer.1, "x-ratelimit-limit"), "2");
        assert_eq!(header(&answer.1, "x-ratelimit-remaining"), remaining);
    }
    // Over the limit even with a valid key: the address is what counts.
    let answer = api.get("/v3/account").await;
    assert_error(&answer, StatusCode::TOO_MANY_REQUESTS, "rate_limit");
    assert!(header(&answer.1, "retry-after").parse::<u64>().unwrap() >= 1);
    // The public document and the EAS endpoints are under the same limit.
    let answer = api
        .call(Method::GET, "/v3/openapi.json", Auth::None, None)
        .await;
    assert_error(&answer, StatusCode::TOO_MANY_REQUESTS, "rate_limit");
    let answer = api
        .call(Method::POST, "/check-alias", Auth::None, Some("{}"))
        .await;
    assert_error(&answer, StatusCode::TOO_MANY_REQUESTS, "rate_limit");

    // Another client has its own budget.
    let (status, headers, body) = api
        .call_from(OTHER_CLIENT, Method::GET, "/v3/account", Auth::Bearer, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(header(&headers, "x-ratelimit-remaining"), "1");
    // Health and metrics are not limited.
    for _ in 0..3 {
        let (status, headers, _) = api.call(Method::GET, "/health", Auth::None, None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(!headers.contains_key("x-ratelimit-limit"));
    }
}

#[tokio::test]
async fn the_eas_endpoints_are_limited_per_ip() {
    let api = Api::with(|c| c.http.rate_limit.per_ip = 1);
    let (status, headers, _) = api
        .call(Method::POST, "/check-alias", Auth::None, Some("{}"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(header(&headers, "x-ratelimit-remaining"), "0");
    let answer = api
        .call(Method::POST, "/check-alias", Auth::None, Some("{}"))
        .await;
    assert_error(&answer, StatusCode::TOO_MANY_REQUESTS, "rate_limit");
}

#[tokio::test]
async fn under_both_limits_the_answer_shows_the_tighter_budget() {
    let api = Api::with(|c| {
        c.http.rate_limit.per_key = 3;
        c.http.rate_limit.per_ip = 10;
    });
    let (_, headers, _) = api.get("/v3/account").await;
    assert_eq!(header(&headers, "x-ratelimit-limit"), "3");
    assert_eq!(header(&headers, "x-ratelimit-remaining"), "2");
    let api = Api::with(|c| {
        c.http.rate_limit.per_key = 10;
        c.http.rate_limit.per_ip = 3;
    });
    let (_, headers, _) = api.get("/v3/account").await;
    assert_eq!(header(&headers, "x-ratelimit-limit"), "3");
    assert_eq!(header(&headers, "x-ratelimit-remaining"), "2");
}

#[tokio::test]
async fn zero_limits_mean_no_limit_and_no_rate_limit_headers() {
    let api = Api::with(|c| {
        c.http.rate_limit.per_key = 0;
        c.http.rate_limit.per_ip = 0;
    });
    for _ in 0..20 {
        let (status, headers, _) = api.get("/v3/account").await;
        assert_eq!(status, StatusCode::OK);
        for name in [
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-reset",
        ] {
            assert!(!headers.contains_key(name), "{name} in {headers:?}");
        }
    }
}

// ------------------------------------------------------ security headers

#[tokio::test]
async fn security_headers_are_sent_by_default_on_every_answer() {
    let api = Api::new();
    let answers = [
        api.get("/v3/account").await,
        api.call(Method::GET, "/v3/account", Auth::None, None).await,
        api.get("/v3/nothing-here").await,
        api.call(Method::GET, "/health", Auth::None, None).await,
    ];
    for (status, headers, _) in &answers {
        assert_eq!(
            header(headers, "x-content-type-options"),
            "nosniff",
            "{status}"
        );
        assert_eq!(header(headers, "x-frame-options"), "DENY", "{status}");
        assert_eq!(
            header(headers, "referrer-policy"),
            "no-referrer",
            "{status}"
        );
        assert_eq!(header(headers, "cache-control"), "no-store", "{status}");
        let csp = header(headers, "content-security-policy");
        assert!(csp.contains("default-src 'none'"), "{csp}");
    }
}

#[tokio::test]
async fn security_headers_are_not_sent_when_turned_off() {
    let api = Api::with(|c| c.http.security_headers = false);
    let (status, headers, _) = api.get("/v3/account").await;
    assert_eq!(status, StatusCode::OK);
    for name in [
        "x-content-type-options",
        "x-frame-options",
        "referrer-policy",
        "content-security-policy",
    ] {
        assert!(!headers.contains_key(name), "{name} in {headers:?}");
    }
}

// ------------------------------------------------------------------ CORS

const APP: &str = "https://app.example.org";

fn preflight(origin: &str) -> Request<Body> {
    Request::builder()
        .method(Method::OPTIONS)
        .uri("/v3/domains")
        .header("origin", origin)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .body(Body::empty())
        .unwrap()
}

fn get_from(origin: &str) -> Request<Body> {
    Request::builder()
        .uri("/v3/domains")
        .header("origin", origin)
        .header("authorization", format!("Bearer {}", KEY))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn a_cors_preflight_from_an_allowed_origin_is_answered_without_a_key() {
    let api = Api::with(|c| c.http.cors_origins = vec![APP.into()]);
    let (status, headers, body) = api.send(CLIENT, preflight(APP)).await;
    assert!(status.is_success(), "{status}: {body}");
    assert_eq!(header(&headers, "access-control-allow-origin"), APP);
    let methods = header(&headers, "access-control-allow-methods").to_ascii_uppercase();
    assert!(
        methods.contains("GET") && methods.contains("DELETE"),
        "{methods}"
    );
    let allowed = header(&headers, "access-control-allow-headers").to_ascii_lowercase();
    assert!(allowed.contains("authorization"), "{allowed}");
    assert!(headers.contains_key("access-control-max-age"));
    assert!(!headers.contains_key("www-authenticate"));
}

#[tokio::test]
async fn a_cors_preflight_spends_no_rate_limit_budget() {
    let api = Api::with(|c| {
        c.http.cors_origins = vec![APP.into()];
        c.http.rate_limit.per_ip = 1;
    });
    for _ in 0..3 {
        let (status, _, _) = api.send(CLIENT, preflight(APP)).await;
        assert!(status.is_success(), "{status}");
    }
    let (status, headers, body) = api.send(CLIENT, get_from(APP)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(header(&headers, "x-ratelimit-remaining"), "0");
    // A refusal still carries the CORS headers, so the page can read it.
    let (status, headers, _) = api.send(CLIENT, get_from(APP)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&headers, "access-control-allow-origin"), APP);
}

#[tokio::test]
async fn a_cors_request_from_an_allowed_origin_gets_allow_origin_and_exposed_headers() {
    let api = Api::with(|c| c.http.cors_origins = vec![APP.into()]);
    let (status, headers, body) = api.send(CLIENT, get_from(APP)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(header(&headers, "access-control-allow-origin"), APP);
    let exposed = header(&headers, "access-control-expose-headers").to_ascii_lowercase();
    for name in ["x-ratelimit-remaining", "retry-after"] {
        assert!(exposed.contains(name), "{exposed}");
    }
}

#[tokio::test]
async fn a_cors_request_from_another_origin_gets_no_allow_origin() {
    let api = Api::with(|c| c.http.cors_origins = vec![APP.into()]);
    let (_, headers, _) = api.send(CLIENT, get_from("https://evil.example")).await;
    assert!(
        !headers.contains_key("access-control-allow-origin"),
        "{headers:?}"
    );
    let (_, headers, _) = api.send(CLIENT, preflight("https://evil.example")).await;
    assert!(
        !headers.contains_key("access-control-allow-origin"),
        "{headers:?}"
    );
}

#[tokio::test]
async fn a_wildcard_cors_origin_allows_any_origin() {
    let api = Api::with(|c| c.http.cors_origins = vec!["*".into()]);
    let (_, headers, _) = api.send(CLIENT, get_from("https://anywhere.example")).await;
    assert_eq!(header(&headers, "access-control-allow-origin"), "*");
}

#[tokio::test]
async fn without_cors_origins_no_cors_headers_are_sent() {
    let api = Api::new();
    for request in [get_from(APP), preflight(APP)] {
        let (_, headers, _) = api.send(CLIENT, request).await;
        for name in [
            "access-control-allow-origin",
            "access-control-allow-methods",
            "access-control-allow-headers",
            "access-control-expose-headers",
        ] {
            assert!(!headers.contains_key(name), "{name} in {headers:?}");
        }
    }
}

// ---------------------------------------------------------------- routes

#[tokio::test]
async fn an_unknown_route_is_404_in_the_error_shape() {
    let api = Api::new();
    for path in [
        "/nothing",
        "/v3/nothing",
        "/v3/domains/example.org/nothing",
        "/v2/domains",
    ] {
        let answer = api.get(path).await;
        let message = assert_error(&answer, StatusCode::NOT_FOUND, "resource");
        assert_eq!(message, "route not found", "{path}");
    }
}

#[tokio::test]
async fn a_known_route_with_an_unserved_method_is_405() {
    let api = Api::new();
    let answer = api
        .call(Method::PATCH, "/v3/domains", Auth::Bearer, None)
        .await;
    assert_error(&answer, StatusCode::METHOD_NOT_ALLOWED, "method");
    let (_, headers, _) = answer;
    let allow = header(&headers, "allow");
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
}

#[tokio::test]
async fn a_suspended_chain_alias_stays_suspended_until_the_operator_resumes_it() {
    let api = api_with_chain_alias().await;
    api.ok(
        Method::DELETE,
        "/v3/domains/name.country/aliases/hello",
        None,
    )
    .await;
    // The owner activates the same alias again: the suspension holds.
    activate_on_chain(&api.store, "name", "hello", "owner@dest.test");
    let shown = api
        .ok(Method::GET, "/v3/domains/name.country/aliases/hello", None)
        .await;
    assert_eq!(shown["alias"]["active"], false, "{shown}");
    // Its forward is the chain's to set...
    let answer = api
        .json(
            Method::PUT,
            "/v3/domains/name.country/aliases/hello",
            &json!({ "forward": "other@dest.test", "active": true }),
        )
        .await;
    assert_error(&answer, StatusCode::CONFLICT, "alias");
    // ...but the operator may resume it.
    let body = api
        .ok(
            Method::PUT,
            "/v3/domains/name.country/aliases/hello",
            Some(json!({ "active": true })),
        )
        .await;
    assert_eq!(body["alias"]["active"], true, "{body}");
    assert_eq!(body["alias"]["forward"], "owner@dest.test", "{body}");
    let record = api
        .store
        .alias_get("name.country", "hello")
        .unwrap()
        .unwrap();
    assert!(record.active);
}

#[tokio::test]
async fn a_static_alias_is_suspended_and_resumed_with_put_active() {
    let api = Api::new();
    api.add_domain("static.test").await;
    api.add_alias("static.test", "ops", "ops@dest.test").await;
    let body = api
        .ok(
            Method::PUT,
            "/v3/domains/static.test/aliases/ops",
            Some(json!({ "active": false })),
        )
        .await;
    assert_eq!(body["alias"]["active"], false, "{body}");
    assert!(
        !api.store
            .alias_get("static.test", "ops")
            .unwrap()
            .unwrap()
            .active
    );
    // An empty change says what it needs.
    let answer = api
        .json(
            Method::PUT,
            "/v3/domains/static.test/aliases/ops",
            &json!({}),
        )
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "forward");
    // Writing a forward re-activates a static alias (the operator's own
    // change, as before).
    let body = api
        .ok(
            Method::PUT,
            "/v3/domains/static.test/aliases/ops",
            Some(json!({ "forward": "ops2@dest.test" })),
        )
        .await;
    assert_eq!(body["alias"]["forward"], "ops2@dest.test", "{body}");
    assert_eq!(body["alias"]["active"], true, "{body}");
}

// -------------------------------------------------------- trailing slash

/// The GET routes of every `/v3` family answer the same with one trailing
/// slash as without (the EAS server's ImprovMX client sends
/// `/domains/{d}/aliases/`), the query kept.
#[tokio::test]
async fn every_v3_route_family_answers_the_same_with_a_trailing_slash() {
    let api = Api::new();
    api.add_domain("example.org").await;
    api.add_alias("example.org", "hello", "u@dest.test").await;
    for path in [
        "/v3/account",
        "/v3/domains",
        "/v3/domains?q=example&limit=1",
        "/v3/domains/example.org",
        "/v3/domains/example.org/aliases",
        "/v3/domains/example.org/aliases?alias=hel",
        "/v3/domains/example.org/aliases/hello",
        "/v3/domains/example.org/logs",
        "/v3/domains/example.org/logs/hello",
        "/v3/queue",
        "/v3/chain/status",
        "/v3/openapi.json",
    ] {
        let slashed = match path.split_once('?') {
            Some((p, q)) => format!("{p}/?{q}"),
            None => format!("{path}/"),
        };
        let (status, _, body) = api.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        let (status, _, slashed_body) = api.get(&slashed).await;
        assert_eq!(status, StatusCode::OK, "{slashed}: {slashed_body}");
        assert_eq!(body, slashed_body, "{slashed}");
    }
    // The query was applied, not dropped with the slash.
    let (_, _, body) = api
        .get("/v3/domains/example.org/aliases/?alias=nomatch")
        .await;
    assert_eq!(body["aliases"], json!([]), "{body}");
}

/// The writes the EAS server sends, each with a trailing slash, do what
/// they do without one; the key is still required.
#[tokio::test]
async fn writes_with_a_trailing_slash_act_as_without_and_need_the_key() {
    let api = Api::new();
    let answer = api
        .call(Method::GET, "/v3/domains/", Auth::None, None)
        .await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "authorization");
    let answer = api
        .call(
            Method::POST,
            "/v3/domains/",
            Auth::None,
            Some("{\"domain\":\"example.org\"}"),
        )
        .await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "authorization");
    assert_eq!(
        api.get("/v3/domains/example.org").await.0,
        StatusCode::NOT_FOUND
    );

    api.ok(
        Method::POST,
        "/v3/domains/",
        Some(json!({ "domain": "example.org" })),
    )
    .await;
    assert_eq!(api.get("/v3/domains/example.org").await.0, StatusCode::OK);
    // addAlias: POST /domains/{d}/aliases/ { alias, forward }
    let body = api
        .ok(
            Method::POST,
            "/v3/domains/example.org/aliases/",
            Some(json!({ "alias": "hello", "forward": "u@dest.test" })),
        )
        .await;
    assert_eq!(body["alias"]["forward"], "u@dest.test", "{body}");
    // listAlias: GET /domains/{d}/aliases/ reads `aliases`
    let body = api
        .ok(Method::GET, "/v3/domains/example.org/aliases/", None)
        .await;
    assert_eq!(names(&body["aliases"]), ["hello"], "{body}");
    api.ok(
        Method::PUT,
        "/v3/domains/example.org/aliases/hello/",
        Some(json!({ "forward": "v@dest.test" })),
    )
    .await;
    let body = api
        .ok(Method::GET, "/v3/domains/example.org/aliases/hello", None)
        .await;
    assert_eq!(body["alias"]["forward"], "v@dest.test", "{body}");
    api.ok(
        Method::POST,
        "/v3/domains/example.org/aliases/bulk/",
        Some(json!({ "aliases": [{ "alias": "b", "forward": "b@dest.test" }] })),
    )
    .await;
    assert!(api.store.alias_get("example.org", "b").unwrap().is_some());
    api.ok(
        Method::DELETE,
        "/v3/domains/example.org/aliases/hello/",
        None,
    )
    .await;
    assert!(
        api.store
            .alias_get("example.org", "hello")
            .unwrap()
            .is_none()
    );
    api.ok(
        Method::PUT,
        "/v3/domains/example.org/",
        Some(json!({ "active": false })),
    )
    .await;
    api.ok(Method::POST, "/v3/queue/retry/", None).await;
    api.ok(Method::DELETE, "/v3/domains/example.org/", None)
        .await;
    assert_eq!(
        api.get("/v3/domains/example.org").await.0,
        StatusCode::NOT_FOUND
    );
    // A missing field is still named with the slash.
    let answer = api.json(Method::POST, "/v3/domains/", &json!({})).await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "domain");
}

/// Only one trailing slash is forgiven, only under `/v3`: doubled slashes
/// and empty segments find no route (404); a percent-encoded slash is no
/// separator (no route, or a name refused on its field); never another
/// resource. `/health/` and the EAS endpoints are not rewritten.
#[tokio::test]
async fn doubled_empty_or_encoded_slashes_reach_no_resource() {
    let api = Api::new();
    api.add_domain("example.org").await;
    api.add_alias("example.org", "hello", "u@dest.test").await;
    for path in [
        "/v3/",
        "/v3//",
        "/v3//domains",
        "/v3/domains//",
        "/v3/domains///",
        "/v3/domains/example.org//",
        "/v3/domains/example.org/aliases//",
        "/v3/domains/example.org/aliases/hello//",
        "/v3/domains//aliases",
        "/v3/domains//aliases/",
        "/v3/domains/example.org//aliases",
        "/v3/domains/example.org//aliases/",
        "/v3/domains%2F",
        "/v3/domains/example.org/aliases%2F",
        "/v3/domains/example.org/aliases%2fhello",
        "/v3/account%2F",
        "//v3/domains",
        "//v3/domains/",
        "/health/",
        "/activate/",
    ] {
        let (status, headers, body) = api.get(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(
            body["errors"]["resource"][0], "route not found",
            "{path}: {body}"
        );
        // Shaped like every other answer.
        assert_eq!(
            header(&headers, "x-content-type-options"),
            "nosniff",
            "{path}"
        );
    }
    // An encoded slash inside a name stays in the name, which is refused on
    // its field (as the CLI says offline): never the alias or domain before
    // the slash.
    for (method, path, field) in [
        (
            Method::GET,
            "/v3/domains/example.org/aliases/hello%2F",
            "alias",
        ),
        (
            Method::GET,
            "/v3/domains/example.org/aliases/hello%2f",
            "alias",
        ),
        (
            Method::DELETE,
            "/v3/domains/example.org/aliases/hello%2F",
            "alias",
        ),
        (
            Method::PUT,
            "/v3/domains/example.org/aliases/hello%2Fx",
            "alias",
        ),
        (Method::GET, "/v3/domains/example.org%2Faliases", "domain"),
        (
            Method::GET,
            "/v3/domains/example.org%2F/aliases/hello",
            "domain",
        ),
        (Method::DELETE, "/v3/domains/example.org%2F", "domain"),
    ] {
        let body = (method == Method::PUT).then_some("{\"forward\":\"x@dest.test\"}");
        let answer = api.call(method, path, Auth::Bearer, body).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, field);
    }
    let answer = api
        .call(
            Method::DELETE,
            "/v3/domains/example.org//aliases/hello",
            Auth::Bearer,
            None,
        )
        .await;
    assert_eq!(answer.0, StatusCode::NOT_FOUND);
    assert!(
        api.store
            .alias_get("example.org", "hello")
            .unwrap()
            .is_some()
    );
}
