//! `GET /api/openapi.json`: the OpenAPI 3.1 document of the JSON API, generated from the
//! handlers' annotations (utoipa), so that it cannot drift from the routes. The web admin
//! pages and API clients are written against it.

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{admin, auth, reports, studies, worklist};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Regional PACS API",
        description = "The HTTP API of the regional imaging archive. Every route needs \
            credentials except /healthz and /api/login: the session cookie set by /api/login \
            (state-changing requests also send its CSRF token in X-CSRF-Token), or an API \
            token as `Authorization: Bearer`. Errors are {\"error\": reason}. A study the \
            caller may not see is answered like one that does not exist (404)."
    ),
    paths(
        auth::login, auth::logout, auth::me,
        studies::list, studies::get_one,
        admin::list_users, admin::get_user, admin::create_user, admin::disable_user,
        admin::enable_user, admin::reset_password, admin::list_tokens, admin::create_token,
        admin::revoke_token, admin::assign_study, admin::revoke_assignment, admin::search_audit,
        admin::list_clinics, admin::create_clinic, admin::add_ae, admin::update_ae,
        admin::remove_ae, admin::dashboard,
        worklist::list, worklist::claim, worklist::release, worklist::reassign,
        worklist::return_to_pool, worklist::list_rules, worklist::create_rule,
        worklist::update_rule, worklist::delete_rule, worklist::set_reading_profile,
        reports::save_preliminary, reports::study_reports, reports::save_draft, reports::sign,
        reports::add_addendum, reports::get_one, reports::verify, reports::templates,
        reports::discrepancies, reports::critical_findings, reports::acknowledge_critical,
        reports::portal_studies, reports::fhir, reports::hl7, reports::pdf,
        reports::deliveries, reports::admin_deliveries, reports::retry_delivery,
    ),
    modifiers(&Credentials),
    security(("session" = []), ("bearer" = [])),
    tags(
        (name = "session", description = "Logging in and out"),
        (name = "studies", description = "Studies the caller may see"),
        (name = "worklist", description = "Reading tasks: worklists, claims"),
        (name = "reports", description = "Preliminary impressions, reports, signatures"),
        (name = "admin", description = "Administration (administrators only)"),
    )
)]
pub struct ApiDoc;

struct Credentials;

impl Modify for Credentials {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(auth::SESSION_COOKIE))),
        );
    }
}

/// `GET /api/openapi.json`
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
