use super::*;
use crate::resources::find;
use crate::validation::FieldError;

fn pods() -> &'static ResourceInfo {
    find("", "v1", "pods").unwrap()
}

#[test]
fn not_found_status_names_the_resource() {
    let s = ApiError::not_found(pods(), "x").to_status();
    assert_eq!(s["kind"], "Status");
    assert_eq!(s["apiVersion"], "v1");
    assert_eq!(s["status"], "Failure");
    assert_eq!(s["code"], 404);
    assert_eq!(s["reason"], "NotFound");
    assert_eq!(s["message"], "pods \"x\" not found");
    assert_eq!(s["details"]["name"], "x");
    assert_eq!(s["details"]["kind"], "pods");
    assert!(s["details"].get("group").is_none());
}

#[test]
fn grouped_resources_are_qualified() {
    let leases = find("coordination.k8s.io", "v1", "leases").unwrap();
    let s = ApiError::AlreadyExists(Target::new(leases, "l")).to_status();
    assert_eq!(s["code"], 409);
    assert_eq!(s["reason"], "AlreadyExists");
    assert_eq!(
        s["message"],
        "leases.coordination.k8s.io \"l\" already exists"
    );
    assert_eq!(s["details"]["group"], "coordination.k8s.io");
}

#[test]
fn conflict_message_matches_kubernetes() {
    let s = ApiError::modified(pods(), "x").to_status();
    assert_eq!(s["code"], 409);
    assert_eq!(s["reason"], "Conflict");
    assert_eq!(
        s["message"],
        "Operation cannot be fulfilled on pods \"x\": the object has been modified; please apply your changes to the latest version and try again"
    );
}

#[test]
fn invalid_lists_causes_with_fields() {
    let one =
        ApiError::invalid(pods(), "x", vec![FieldError::required("spec.containers")]).to_status();
    assert_eq!(one["code"], 422);
    assert_eq!(
        one["message"],
        "Pod \"x\" is invalid: spec.containers: Required value"
    );
    assert_eq!(one["details"]["kind"], "Pod");
    assert_eq!(one["details"]["causes"][0]["field"], "spec.containers");
    assert_eq!(one["details"]["causes"][0]["reason"], "FieldValueRequired");
    assert_eq!(one["details"]["causes"][0]["message"], "Required value");

    let two = ApiError::invalid(
        pods(),
        "x",
        vec![
            FieldError::required("spec.containers"),
            FieldError::invalid("metadata.name", "\"A\"", "bad"),
        ],
    )
    .to_status();
    assert_eq!(
        two["message"],
        "Pod \"x\" is invalid: [spec.containers: Required value, metadata.name: Invalid value: \"A\": bad]"
    );
    assert_eq!(
        two["details"]["causes"][1]["message"],
        "Invalid value: \"A\": bad"
    );
}

#[test]
fn codes_and_reasons() {
    let cases: Vec<(ApiError, u16, &str)> = vec![
        (ApiError::BadRequest("b".into()), 400, "BadRequest"),
        (ApiError::Unauthorized, 401, "Unauthorized"),
        (ApiError::Forbidden("f".into()), 403, "Forbidden"),
        (ApiError::PathNotFound, 404, "NotFound"),
        (ApiError::MethodNotAllowed, 405, "MethodNotAllowed"),
        (ApiError::Gone("g".into()), 410, "Expired"),
        (
            ApiError::RequestEntityTooLarge,
            413,
            "RequestEntityTooLarge",
        ),
        (
            ApiError::UnsupportedMediaType("u".into()),
            415,
            "UnsupportedMediaType",
        ),
        (ApiError::Internal("i".into()), 500, "InternalError"),
        (ApiError::Unavailable("n".into()), 503, "ServiceUnavailable"),
    ];
    for (e, code, reason) in cases {
        let s = e.to_status();
        assert_eq!(s["code"], code, "{e:?}");
        assert_eq!(s["reason"], reason, "{e:?}");
        assert_eq!(e.status_code(), code);
    }
}

#[test]
fn store_errors_translate() {
    let gone: ApiError = StoreError::Compacted {
        requested: 3,
        compact_revision: 9,
    }
    .into();
    assert_eq!(gone.status_code(), 410);
    assert_eq!(gone.to_string(), "too old resource version: 3 (9)");
    let unavailable: ApiError = StoreError::NoLeader("election".into()).into();
    assert_eq!(unavailable.status_code(), 503);
    assert_eq!(unavailable.retry_after(), Some(RETRY_AFTER_SECONDS));
    assert_eq!(unavailable.to_status()["details"]["retryAfterSeconds"], 1);
}
