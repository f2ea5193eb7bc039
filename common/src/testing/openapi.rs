//! Checks that the OpenAPI document a service serves and the routes it serves are the same:
//! every path actix has registered is documented, and for each of them every method answers
//! something other than the "no such route" fallback exactly when the document lists it.

use std::collections::BTreeSet;

use actix_web::{App, HttpRequest, HttpResponse, test, web};
use reqwest::Method;
use serde_json::Value;

use crate::{http::skeleton_routes, problem::NO_SUCH_ROUTE};

use super::TestApp;

/// The methods probed on every path.
const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

/// The stand-in for a path parameter: a nil UUID, which every id route parses.
const PARAMETER: &str = "00000000-0000-0000-0000-000000000000";

/// Asserts that `app`'s `/openapi.json` is an OpenAPI 3.1 document naming exactly the paths
/// the skeleton and `configure` (the service's `routes::configure`) register, and exactly the
/// methods each of them answers.
pub async fn assert_document_matches_routes(
    app: &TestApp,
    configure: impl Fn(&mut web::ServiceConfig) + 'static,
) {
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), 200, "GET /openapi.json");
    let doc: Value = response.json().await.expect("the document is JSON");
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1."), "OpenAPI version {version:?}");

    let paths = doc["paths"].as_object().expect("the document has paths");
    let documented: BTreeSet<String> = paths.keys().cloned().collect();
    let registered = registered_paths(configure).await;
    assert_eq!(
        documented, registered,
        "the paths of /openapi.json are not the routes actix serves"
    );

    for path in paths.keys() {
        let concrete = path.replace("{id}", PARAMETER);
        assert!(
            !concrete.contains('{'),
            "{path} has a parameter other than {{id}}"
        );
        let url = app.url(&concrete);
        for method in METHODS {
            // `/products/buy` is also `/products/{id}` with the id `buy`.
            let listed = paths.iter().any(|(template, item)| {
                matches(template, &concrete) && item.get(method.as_str().to_lowercase()).is_some()
            });
            let response = app
                .http
                .request(method.clone(), &url)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let fallback = status == 404 && body["detail"] == NO_SUCH_ROUTE;
            assert_eq!(
                listed, !fallback,
                "{method} {path}: documented {listed}, answered {status} {body}"
            );
        }
    }
}

/// Whether the concrete `path` is an instance of `template`, whose `{...}` segments match any
/// one segment.
fn matches(template: &str, path: &str) -> bool {
    let template: Vec<&str> = template.split('/').collect();
    let path: Vec<&str> = path.split('/').collect();
    template.len() == path.len()
        && template
            .iter()
            .zip(&path)
            .all(|(t, p)| t == p || (t.starts_with('{') && t.ends_with('}')))
}

/// The full path of every resource the skeleton and `configure` register, read from actix's
/// own resource map (its `Debug` form is the one way to list it).
async fn registered_paths(
    configure: impl Fn(&mut web::ServiceConfig) + 'static,
) -> BTreeSet<String> {
    let service = test::init_service(
        App::new()
            .configure(skeleton_routes)
            .configure(configure)
            .default_service(web::to(|req: HttpRequest| async move {
                HttpResponse::Ok().body(format!("{:#?}", req.resource_map()))
            })),
    )
    .await;
    let map = test::call_and_read_body(
        &service,
        test::TestRequest::get().uri("/no/such/route").to_request(),
    )
    .await;
    leaf_paths(std::str::from_utf8(&map).expect("the map is text"))
}

/// Reads the full paths of the leaves (resources, not scopes) from a resource map's `{:#?}`:
/// each node's pattern is the line after its `patterns: Single(`, its children sit deeper, and
/// a leaf's `nodes: None` follows its pattern one level up (outside its `ResourceDef`).
fn leaf_paths(map: &str) -> BTreeSet<String> {
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut leaves = BTreeSet::new();
    let mut lines = map.lines();
    while let Some(line) = lines.next() {
        let indent = line.len() - line.trim_start().len();
        match line.trim() {
            "patterns: Single(" => {
                let pattern = lines.next().map(str::trim).unwrap_or_default();
                let pattern = pattern
                    .strip_prefix('"')
                    .and_then(|p| p.strip_suffix("\","))
                    .unwrap_or_else(|| panic!("a pattern, not {pattern:?}"));
                stack.retain(|(depth, _)| *depth < indent);
                stack.push((indent, pattern.to_owned()));
            }
            "nodes: None," if stack.last().is_some_and(|(depth, _)| *depth > indent) => {
                leaves.insert(stack.iter().map(|(_, p)| p.as_str()).collect::<String>());
            }
            _ => {}
        }
    }
    leaves
}
