//! The web viewer (viewer-web) as a person uses it: the real `pacs serve` serves the built
//! files, and Debian's Chromium (headless, driven by playwright-core through
//! `viewer-web/tests/display-study.mjs`) logs in through the login form, opens stored
//! studies and looks at them with Cornerstone3D's DICOM image loader over WADO-RS:
//! a multi-slice CT (native), an MR series in JPEG-LS, a DX image in JPEG 2000 and an RGB
//! secondary capture whose patient name is markup. What is judged is what a user would
//! notice: a picture that is not blank, that changes when scrolling to another slice and
//! when the window is dragged, names shown as the text they are, no errors in the console,
//! no Content-Security-Policy violation, and only studies of the user's own clinic listed.
//!
//! Also, without a browser: the built files are served without credentials, everything
//! else still needs them, and paths out of the viewer's directory are refused.
//!
//! `scripts/test.sh` installs Chromium (Debian's `chromium`) and Node.js and builds the
//! viewer (`npm ci && npm run build` in viewer-web) before the tests; a missing piece fails
//! the test with what to run. SQLite + files only: the storage backends are covered by the
//! WADO-RS tests, this is about the browser.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::http::*;
use crate::support::*;

const PASSWORD: &str = "viewer test passphrase 4711";

pub(crate) fn viewer_dir() -> PathBuf {
    repo_root().join("viewer-web")
}

pub(crate) fn dist_dir() -> PathBuf {
    viewer_dir().join("dist")
}

/// The built viewer, Chromium and playwright-core, or a failure saying what to run.
pub(crate) fn require_browser_setup() {
    assert!(
        dist_dir().join("index.html").is_file(),
        "the viewer is not built ({} has no index.html): run `npm ci && npm run build` in \
         viewer-web (scripts/test.sh does)",
        dist_dir().display()
    );
    assert!(
        viewer_dir()
            .join("node_modules/playwright-core/package.json")
            .is_file(),
        "playwright-core is not installed: run `npm ci` in viewer-web (scripts/test.sh does)"
    );
    assert!(
        Path::new("/usr/bin/chromium").is_file(),
        "/usr/bin/chromium is missing: apt-get install chromium (scripts/test.sh does)"
    );
}

/// (study, series) UIDs of a sample file.
pub(crate) fn uids(file: &str) -> (String, String) {
    let (_, a) = file_attrs(&sample_dir().join(file));
    (a.study_instance_uid, a.series_instance_uid)
}

/// An archive with the samples of clinic A (CT, MR JPEG-LS, DX JPEG 2000, the secondary
/// capture with a markup name) and one study of clinic B, a township doctor of clinic A
/// with a password, and `pacs serve` on it.
fn archive_with_studies() -> (TestArchive, Server) {
    let archive = TestArchive::new(Backend::SqliteFiles)
        .with_env("PACS_VIEWER_DIR", &dist_dir().display().to_string());
    archive.add_clinic("Clinic A", "CLINIC_A_AE", None);
    archive.add_clinic("Clinic B", "CLINIC_B_AE", None);
    let all = sample_files();
    let named = |pred: &dyn Fn(&str) -> bool| -> Vec<String> {
        all.iter()
            .filter(|p| pred(&p.file_name().unwrap().to_string_lossy()))
            .map(|p| p.display().to_string())
            .collect()
    };
    let clinic_a = named(&|n| {
        n.starts_with("ct_")
            || n.starts_with("mr_jpegls_")
            || n.starts_with("dx_")
            || n == "sc_rgb_implicit.dcm"
    });
    let clinic_b = named(&|n| n == "cr_jpeg_baseline.dcm");
    for (clinic, files) in [("Clinic A", &clinic_a), ("Clinic B", &clinic_b)] {
        let mut args = vec!["import", "--quiet", "--clinic", clinic];
        args.extend(files.iter().map(String::as_str));
        archive.pacs_ok(&args);
    }
    let out = archive.pacs_with_stdin(
        &[
            "user",
            "add",
            "--username",
            "dr-wang",
            "--role",
            "township-doctor",
            "--clinic",
            "Clinic A",
            "--password-stdin",
        ],
        format!("{PASSWORD}\n").as_bytes(),
    );
    assert!(
        out.status.success(),
        "user add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = archive.start();
    (archive, server)
}

/// Runs the browser script on a study (and a series of it), returning its report. Each run
/// tries one wrong password first: the few runs here stay far below the login throttle of
/// one client address (20 failures), and the right password clears the user's count.
fn display(server: &Server, study: &str, series: Option<&str>, name: &str) -> Value {
    let shots = run_dir().join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let screenshot = shots.join(format!("viewer-{name}.png"));
    let mut c = browser_script("tests/display-study.mjs", server);
    c.arg("dr-wang").arg(PASSWORD).arg(study).arg(&screenshot);
    if let Some(s) = series {
        c.arg(s);
    }
    let report = browser_report(
        c,
        &format!("display-study.mjs ({name})"),
        server,
        Duration::from_secs(300),
    );
    assert!(screenshot.is_file(), "{name}: no screenshot");
    report
}

/// `node <script> BASE_URL` in viewer-web, for a browser script run against `server`; the
/// caller adds the script's other arguments.
pub(crate) fn browser_script(script: &str, server: &Server) -> Command {
    let mut c = Command::new("node");
    c.current_dir(viewer_dir())
        .arg(script)
        .arg(format!("http://127.0.0.1:{}", server.http_port));
    c
}

/// Runs a browser script (within `limit`) and returns the JSON report it printed; panics,
/// with the script's output and the server's log, when it printed none or the run broke.
pub(crate) fn browser_report(c: Command, what: &str, server: &Server, limit: Duration) -> Value {
    let out = run_bounded(c, limit);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let r: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "{what} printed no report ({e}; {}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        out.status.success() && r["fatal"].is_null(),
        "the browser run ({what}) broke: {}\nreport: {r:#}\nserver log:\n{}",
        r["fatal"],
        server.log()
    );
    r
}

/// No uncaught error, Content-Security-Policy violation or dialog (an `alert` from injected
/// markup would be one) in a browser run's report.
pub(crate) fn assert_page_clean(r: &Value, what: &str) {
    assert_eq!(
        r["pageErrors"],
        serde_json::json!([]),
        "{what}: page errors"
    );
    assert_eq!(
        r["cspViolations"],
        serde_json::json!([]),
        "{what}: CSP violations"
    );
    assert_eq!(r["dialogs"], serde_json::json!([]), "{what}: dialogs");
}

/// A 401 the page expects: `/api/me` telling it nobody is logged in (before the login and
/// after the logout), and the wrong password tried first. The browser logs each as a
/// failed resource load.
fn expected_401(url: &str) -> bool {
    url.ends_with("/api/me") || url.ends_with("/api/login")
}

/// What every run must show: no uncaught error, no console error or warning but the
/// expected 401s, no Content-Security-Policy violation, no dialog, no other failed
/// request; the wrong password was told in words, the right one let the user in, and the
/// logout led back to the login form.
fn assert_clean(r: &Value, name: &str) {
    assert_page_clean(r, name);
    let bad: Vec<&Value> = r["console"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] == "error" || m["type"] == "warning")
        .filter(|m| {
            !(m["text"]
                .as_str()
                .unwrap()
                .contains("status of 401 (Unauthorized)")
                && expected_401(m["url"].as_str().unwrap()))
        })
        .collect();
    assert!(bad.is_empty(), "{name}: console errors/warnings: {bad:#?}");
    let requests = r["requests"].as_array().unwrap();
    let failed: Vec<&Value> = requests
        .iter()
        .filter(|q| {
            let status = q["status"].as_u64().unwrap();
            let url = q["url"].as_str().unwrap();
            (status == 0 || status >= 400) && !(status == 401 && expected_401(url))
        })
        .collect();
    assert!(failed.is_empty(), "{name}: failed requests: {failed:#?}");
    let logins: Vec<u64> = requests
        .iter()
        .filter(|q| q["url"].as_str().unwrap().ends_with("/api/login"))
        .map(|q| q["status"].as_u64().unwrap())
        .collect();
    assert_eq!(
        logins,
        [401, 200],
        "{name}: wrong password, then the right one"
    );
    assert_eq!(
        r["wrongPasswordMessage"], "Wrong username or password.",
        "{name}: what the login form said"
    );
    assert_eq!(r["loggedOut"], true, "{name}: logout");
}

fn requested(r: &Value, pred: impl Fn(&str, &Value) -> bool) -> Vec<Value> {
    r["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| pred(q["url"].as_str().unwrap(), q))
        .cloned()
        .collect()
}

fn stats<'a>(r: &'a Value, step: &str) -> &'a Value {
    let s = &r["steps"][step]["stats"];
    assert!(s.is_object(), "no canvas statistics for {step}: {r:#}");
    s
}

/// A picture, not a uniform or empty canvas.
pub(crate) fn assert_picture(s: &Value, what: &str) {
    let std = s["stddev"].as_f64().unwrap();
    let levels = s["distinctLevels"].as_u64().unwrap();
    let lit = s["nonBlackFraction"].as_f64().unwrap();
    assert!(
        std > 10.0 && levels > 16 && lit > 0.02,
        "{what}: the canvas shows no image (stddev {std}, {levels} grey levels, {lit} lit): {s}"
    );
}

/// Two canvases differ visibly: the 16×16 grid of mean grey levels moved by more than a
/// rounding error.
pub(crate) fn assert_changed(a: &Value, b: &Value, what: &str) {
    let ga: Vec<i64> = serde_json::from_value(a["grid"].clone()).unwrap();
    let gb: Vec<i64> = serde_json::from_value(b["grid"].clone()).unwrap();
    let moved: i64 = ga.iter().zip(&gb).map(|(x, y)| (x - y).abs()).sum();
    assert!(
        moved > 2 * ga.len() as i64 / 16,
        "{what}: the picture did not change (grid difference {moved})"
    );
}

/// The test's own state attributes and overlay: index / count / window.
fn state<'a>(r: &'a Value, step: &str) -> &'a Value {
    &r["steps"][step]["state"]
}

#[test]
fn viewer_displays_stored_studies_in_chromium() {
    require_browser_setup();
    let (_archive, server) = archive_with_studies();
    let (ct_study, ct_series) = uids("ct_01.dcm");

    // --- The CT: 10 native slices, Chinese name.
    let r = display(&server, &ct_study, None, "ct");
    assert_clean(&r, "CT");
    assert!(
        r["webgl"].is_string(),
        "WebGL (SwiftShader) is available, so the GPU path of Cornerstone was the one tested"
    );
    // The study list: this clinic's studies only, names as text.
    let list = r["studyList"].as_array().unwrap();
    let listed: Vec<&str> = list.iter().map(|s| s["study"].as_str().unwrap()).collect();
    let (clinic_b_study, _) = uids("cr_jpeg_baseline.dcm");
    assert!(listed.contains(&ct_study.as_str()), "{listed:?}");
    assert!(
        !listed.contains(&clinic_b_study.as_str()),
        "a study of another clinic is listed: {listed:?}"
    );
    assert_eq!(list.len(), 4, "CT, MR, DX, SC of clinic A: {list:#?}");
    assert_eq!(
        r["imagesInStudyList"], 0,
        "markup in a name became an element"
    );
    assert_eq!(
        r["patientName"], "Liu Yan (刘䶮)",
        "the heading of the study"
    );
    // The loader fetched the series metadata and the frames (WADO-RS), as Cornerstone
    // asks for them, and the answers were what it takes.
    let metadata = requested(&r, |u, _| {
        u.ends_with(&format!("/studies/{ct_study}/series/{ct_series}/metadata"))
    });
    assert_eq!(metadata.len(), 1, "series metadata fetched once");
    assert_eq!(metadata[0]["status"], 200);
    assert!(
        metadata[0]["contentType"]
            .as_str()
            .unwrap()
            .starts_with("application/dicom+json")
    );
    let frames = requested(&r, |u, _| {
        u.contains(&format!(
            "/studies/{ct_study}/series/{ct_series}/instances/"
        )) && u.ends_with("/frames/1")
    });
    // The series behind the first image in one request (WADO-RS series pixel data), so
    // that the whole stack scrolls without waiting; on their own only the first slice and
    // at most the two scrolled to before their part arrived, none of them twice.
    let pixeldata = requested(&r, |u, _| {
        u.ends_with(&format!("/studies/{ct_study}/series/{ct_series}/pixeldata"))
    });
    assert_eq!(
        pixeldata.len(),
        1,
        "series pixel data fetched once: {pixeldata:#?}"
    );
    assert_eq!(pixeldata[0]["status"], 200, "{pixeldata:#?}");
    assert!(
        pixeldata[0]["contentType"]
            .as_str()
            .unwrap()
            .starts_with("multipart/related; type=\"application/octet-stream\""),
        "{pixeldata:#?}"
    );
    let distinct: std::collections::BTreeSet<&str> =
        frames.iter().map(|f| f["url"].as_str().unwrap()).collect();
    assert_eq!(
        distinct.len(),
        frames.len(),
        "a frame fetched twice: {frames:#?}"
    );
    assert!(
        (1..=3).contains(&frames.len()),
        "frames fetched one by one beside the series' pixel data: {frames:#?}"
    );
    // Each frame asked for as a single part (multipart only as the fallback) and answered
    // so: the loader takes a single-part body as it is, where it would search a multipart
    // one for its closing boundary byte by byte.
    for f in &frames {
        assert_eq!(f["status"], 200, "{f}");
        assert!(
            f["accept"]
                .as_str()
                .unwrap()
                .starts_with("application/octet-stream; transfer-syntax=*, multipart/related"),
            "{f}"
        );
        assert_eq!(
            f["contentType"], "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1",
            "{f}"
        );
    }
    // The decoder ran in a web worker loaded from /assets (CSP worker-src 'self').
    assert!(
        !requested(&r, |u, q| u.contains("/assets/decodeImageFrameWorker")
            && q["status"] == 200)
        .is_empty(),
        "the decode worker was not loaded"
    );
    // What the user sees: a CT slice, another one after the wheel, another after the arrow
    // key, and a different rendering of the same slice after a window drag.
    assert_eq!(state(&r, "initial")["count"], 10);
    // Every slice loaded without scrolling to it, and the viewer says when it is done.
    let all = &r["allLoaded"];
    assert_eq!(
        (&all["loaded"], &all["loading"]),
        (&serde_json::json!(10), &serde_json::json!("")),
        "{all}"
    );
    assert_eq!(state(&r, "initial")["index"], 0);
    assert_eq!(state(&r, "initial")["slice"], "Image 1 / 10");
    assert_picture(stats(&r, "initial"), "CT slice 1");
    assert_eq!(state(&r, "afterWheel")["index"], 1, "mouse wheel scrolls");
    assert_picture(stats(&r, "afterWheel"), "CT slice 2");
    assert_changed(
        stats(&r, "initial"),
        stats(&r, "afterWheel"),
        "scrolling to slice 2",
    );
    assert_eq!(state(&r, "afterArrowKey")["index"], 2, "arrow key scrolls");
    assert_changed(
        stats(&r, "afterWheel"),
        stats(&r, "afterArrowKey"),
        "scrolling to slice 3",
    );
    // The window the images declare first (400/40, the first of two), then the dragged one.
    let w0 = state(&r, "initial")["window"].as_str().unwrap();
    assert!(w0.starts_with("W 399") || w0.starts_with("W 400"), "{w0}");
    let w1 = state(&r, "afterWindowDrag")["window"].as_str().unwrap();
    assert_ne!(w1, w0, "window/level drag");
    assert_eq!(state(&r, "afterWindowDrag")["index"], 2);
    assert_picture(stats(&r, "afterWindowDrag"), "CT after window drag");
    assert_changed(
        stats(&r, "afterArrowKey"),
        stats(&r, "afterWindowDrag"),
        "changing the window",
    );

    // --- The MR: JPEG-LS frames, decoded by the loader's CharLS WebAssembly codec.
    let (mr_study, mr_series) = uids("mr_jpegls_01.dcm");
    let r = display(&server, &mr_study, None, "mr-jpegls");
    assert_clean(&r, "MR JPEG-LS");
    assert_eq!(r["patientName"], "Huang Meiling (黄美玲)");
    let frames = requested(&r, |u, _| {
        u.contains(&format!("/series/{mr_series}/instances/")) && u.ends_with("/frames/1")
    });
    assert!(!frames.is_empty());
    assert!(
        frames.iter().all(|f| f["contentType"]
            .as_str()
            .unwrap()
            .starts_with("image/jls; transfer-syntax=1.2.840.10008.1.2.4.8")),
        "JPEG-LS frames as sent: {frames:#?}"
    );
    assert!(
        !requested(&r, |u, q| u.contains("/assets/charlswasm_decode")
            && q["contentType"] == "application/wasm")
        .is_empty(),
        "the JPEG-LS codec (WebAssembly) was loaded"
    );
    assert_eq!(state(&r, "initial")["count"], 5);
    assert_picture(stats(&r, "initial"), "MR slice 1");
    assert_eq!(state(&r, "afterWheel")["index"], 1);
    assert_changed(
        stats(&r, "initial"),
        stats(&r, "afterWheel"),
        "MR scrolling",
    );
    assert_changed(
        stats(&r, "afterArrowKey"),
        stats(&r, "afterWindowDrag"),
        "MR window",
    );

    // --- The DX in JPEG 2000 (the study's second series, chosen in the series list).
    let (dx_study, j2k_series) = uids("dx_j2k.dcm");
    let r = display(&server, &dx_study, Some(&j2k_series), "dx-j2k");
    assert_clean(&r, "DX JPEG 2000");
    assert_eq!(r["viewer"]["series"], j2k_series.as_str());
    let frames = requested(&r, |u, _| {
        u.contains(&format!("/series/{j2k_series}/instances/")) && u.ends_with("/frames/1")
    });
    assert_eq!(frames.len(), 1, "{frames:#?}");
    assert!(
        frames[0]["contentType"]
            .as_str()
            .unwrap()
            .starts_with("image/jp2; transfer-syntax=1.2.840.10008.1.2.4.9"),
        "{frames:#?}"
    );
    assert!(
        !requested(&r, |u, q| u.contains("/assets/openjpegwasm_decode")
            && q["contentType"] == "application/wasm")
        .is_empty(),
        "the JPEG 2000 codec (WebAssembly) was loaded"
    );
    assert_eq!(state(&r, "initial")["count"], 1);
    assert_picture(stats(&r, "initial"), "DX JPEG 2000");
    assert_changed(
        stats(&r, "initial"),
        stats(&r, "afterWindowDrag"),
        "DX window",
    );

    // --- The secondary capture whose name is markup: shown as text, never run.
    let (sc_study, _) = uids("sc_rgb_implicit.dcm");
    let r = display(&server, &sc_study, None, "sc-markup-name");
    assert_clean(&r, "SC with a markup name");
    let name = r["patientName"].as_str().unwrap();
    // `Test^<img src=x onerror=alert(1)>`: '=' separates PN component groups, so the
    // alphabetic group is `Test^<img src`: shown as those characters.
    assert!(name.starts_with("Test <img src"), "{name:?}");
    let listed = r["studyList"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["study"] == sc_study.as_str())
        .unwrap()["name"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(listed.contains("<img src"), "{listed:?}");
    assert_eq!(r["imagesInStudyList"], 0);
    assert_picture(stats(&r, "initial"), "RGB secondary capture");
}

/// The viewer's files need no credentials; nothing else became public; ServeDir keeps
/// requests inside the viewer's directory; `index.html` is revalidated, hashed assets are
/// cached for good, WebAssembly has its media type; every answer has the CSP.
#[test]
fn viewer_files_are_public_and_nothing_else() {
    require_browser_setup();
    let archive = TestArchive::new(Backend::SqliteFiles)
        .with_env("PACS_VIEWER_DIR", &dist_dir().display().to_string());
    let server = archive.start();
    let port = server.http_port;

    let index = get(port, "/", &[]);
    index.expect(200, "GET /");
    assert!(index.headers("content-type")[0].starts_with("text/html"));
    assert_eq!(index.headers("cache-control"), ["no-cache"]);
    let csp = index.headers("content-security-policy")[0].clone();
    for part in [
        "default-src 'self'",
        "script-src 'self' 'wasm-unsafe-eval'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("'unsafe-eval'"),
        "{csp}"
    );
    // The page loads its code from /assets only, with no inline script.
    assert!(index.body.contains("src=\"/assets/"), "{}", index.body);
    assert!(
        !index.body.contains("<script>"),
        "inline script in index.html"
    );
    let head = request(port, "HEAD", "/", &[], None);
    assert_eq!(head.status, 200);

    let assets: Vec<String> = std::fs::read_dir(dist_dir().join("assets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let wasm = assets
        .iter()
        .find(|n| n.starts_with("charlswasm_decode") && n.ends_with(".wasm"))
        .expect("the JPEG-LS codec is built");
    let r = get(port, &format!("/assets/{wasm}"), &[]);
    r.expect(200, "a codec");
    assert_eq!(r.headers("content-type"), ["application/wasm"]);
    assert_eq!(
        r.headers("cache-control"),
        ["public, max-age=31536000, immutable"]
    );
    assert_eq!(
        r.raw,
        std::fs::read(dist_dir().join("assets").join(wasm)).unwrap()
    );
    let missing = get(port, "/assets/no-such-file.js", &[]);
    missing.expect(404, "a missing asset");
    assert!(missing.headers("cache-control").is_empty());

    // Out of the directory: never the file, whatever the spelling.
    for path in [
        "/assets/../../Cargo.toml",
        "/assets/%2e%2e/%2e%2e/Cargo.toml",
        "/assets/..%2f..%2fCargo.toml",
        "/assets/%2E%2E/index.html",
        "/assets//etc/passwd",
        "/assets/..\\..\\Cargo.toml",
    ] {
        let r = get(port, path, &[]);
        assert!(
            r.status == 404 || r.status == 400 || r.status == 401,
            "{path}: {} {}",
            r.status,
            r.body
        );
        assert!(
            !r.body.contains("[workspace]") && !r.body.contains("root:"),
            "{path} leaked a file"
        );
    }

    // Everything else still needs credentials.
    for path in [
        "/api/studies",
        "/api/me",
        "/dicom-web/studies",
        "/metrics",
        "/index.html",
        "/assets",
        "/api/assets/x",
    ] {
        get(port, path, &[]).expect(401, path);
    }
    request(port, "POST", "/", &[], Some("")).expect(401, "POST /");
    request(port, "PUT", &format!("/assets/{wasm}"), &[], Some("x")).expect(401, "PUT /assets");
}

/// A server whose viewer is not built says so, in words, instead of a bare 404.
#[test]
fn unbuilt_viewer_is_explained() {
    let empty = tempfile::tempdir().unwrap();
    let archive = TestArchive::new(Backend::SqliteFiles)
        .with_env("PACS_VIEWER_DIR", &empty.path().display().to_string());
    let server = archive.start();
    let r = get(server.http_port, "/", &[]);
    r.expect(503, "GET / without a built viewer");
    assert!(r.error().contains("npm run build"), "{}", r.body);
    get(server.http_port, "/assets/index.js", &[]).expect(404, "no assets");
}
