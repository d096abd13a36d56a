//! The reading view's image tools in the browser (viewer-web's tools.ts, layout.ts,
//! cine.ts, sync.ts, priors.ts, measurements.ts, key-images.ts, thumbnails.ts), end to
//! end: `pacs serve` serves the built viewer, the routing gives the CT to a radiologist,
//! and Debian's Chromium (headless, driven by playwright-core through
//! `viewer-web/tests/reading-tools.mjs`) reads it at 1280×800:
//!
//! - the series thumbnails load (WADO-RS `/thumbnail` as `blob:` images);
//! - a right drag zooms, t rotates, h flips, r resets (the canvas pixels change each time);
//! - cine (space) moves through the stack and stops;
//! - layout 1×2 (Shift+2) shows two viewports with images, 2×2 four;
//! - the patient's prior CT, sent by another clinic, is listed and opens in the second
//!   viewport; the wheel over the first scrolls both (synchronised), and not once
//!   synchronisation is off (s);
//! - a length (m), an ellipse ROI (o), an angle (a) and a rectangle ROI (b) drawn with the
//!   mouse are listed with mm, degrees and HU; Delete removes the newest;
//! - a key image (k) goes with the saved draft (`key_images`) and comes back with it;
//! - the same view at 1920×1080 fits the screen.
//!
//! No uncaught error, CSP violation or dialog. Screenshots in the run directory
//! (`target/e2e-run/screenshots/reading-tools*.png`); docs/screenshots/reading-tools.png
//! is a copy that was looked at.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;
use crate::viewer::{
    assert_changed, assert_page_clean, assert_picture, browser_report, browser_script, dist_dir,
    require_browser_setup, uids,
};

const PASSWORD: &str = "viewer tools test passphrase 2718";
/// The prior: the sample CT again as a study of 2023 sent by clinic B (same patient ID and
/// issuer, so the same patient record: a prior the radiologist of the CT may see).
const PRIOR_STUDY: &str = "1.2.826.0.1.3680043.10.2718.1";

/// Copies of the ten CT slices as the prior study (dcmodify also updates the file meta).
fn prior_files(dir: &Path) -> Vec<PathBuf> {
    ct_sample_files()
        .iter()
        .enumerate()
        .map(|(i, src)| {
            let dst = dir.join(format!("prior_{:02}.dcm", i + 1));
            std::fs::copy(src, &dst).unwrap();
            let mut c = Command::new("/usr/bin/dcmodify");
            c.args([
                "-nb",
                "-m",
                &format!("(0020,000d)={PRIOR_STUDY}"),
                "-m",
                &format!("(0020,000e)={PRIOR_STUDY}.1"),
                "-m",
                &format!("(0008,0018)={PRIOR_STUDY}.1.{}", i + 1),
                "-m",
                &format!("(0020,0052)={PRIOR_STUDY}.9"),
                "-m",
                "(0008,0020)=20230105",
                "-m",
                "(0008,0050)=PRIOR-2023",
            ])
            .arg(&dst);
            let out = run_bounded(c, Duration::from_secs(30));
            assert!(
                out.status.success(),
                "dcmodify: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            dst
        })
        .collect()
}

fn import(archive: &TestArchive, clinic: &str, files: &[PathBuf]) {
    let paths: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    let mut args = vec!["import", "--quiet", "--clinic", clinic];
    args.extend(paths.iter().map(String::as_str));
    archive.pacs_ok(&args);
}

/// Clinics A and B; the CT and the US clip of clinic A, the prior CT of clinic B; a chest
/// radiologist; `pacs serve` with a 1 s quiet period, once the CT's task is made.
fn archive_with_prior() -> (TestArchive, Server) {
    let archive = TestArchive::new(Backend::SqliteFiles)
        .with_env("PACS_VIEWER_DIR", &dist_dir().display().to_string())
        .with_env("PACS_STUDY_QUIET_SECONDS", "1");
    archive.add_clinic("Clinic A", "CLINIC_A_AE", None);
    archive.add_clinic("Clinic B", "CLINIC_B_AE", None);
    let mut a = ct_sample_files();
    a.push(sample_dir().join("us_cine_jpeg.dcm"));
    import(&archive, "Clinic A", &a);
    let prior_dir = archive.data_dir().join("prior-files");
    std::fs::create_dir_all(&prior_dir).unwrap();
    import(&archive, "Clinic B", &prior_files(&prior_dir));
    let out = archive.pacs_with_stdin(
        &[
            "user",
            "add",
            "--username",
            "rad-chest",
            "--role",
            "radiologist",
            "--subspecialty",
            "chest",
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
    // The routing's tasks (the CT's above all), before the browser looks at the worklist.
    runtime().block_on(async {
        let a = archive.open().await;
        let pool = a.index().pool_for_tests();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM reading_tasks")
                .fetch_one(pool)
                .await
                .unwrap();
            if n >= 3 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no reading tasks were made: {}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        a.index().close().await;
    });
    (archive, server)
}

fn indices(v: &Value) -> Vec<Option<u64>> {
    v.as_array().unwrap().iter().map(|i| i.as_u64()).collect()
}

fn cell(cells: &Value, n: usize) -> &Value {
    &cells[n]
}

#[test]
fn viewer_reading_tools_layouts_priors_measurements_in_chromium() {
    require_browser_setup();
    let (_archive, server) = archive_with_prior();
    let (ct_study, ct_series) = uids("ct_01.dcm");
    let (us_study, _) = uids("us_cine_jpeg.dcm");

    let shots = run_dir().join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    note_secret(PASSWORD);
    let mut c = browser_script("tests/reading-tools.mjs", &server);
    c.args(["rad-chest", PASSWORD, &ct_study, PRIOR_STUDY])
        .arg(&shots);
    let r = browser_report(c, "reading-tools.mjs", &server, Duration::from_secs(300));

    // Clean: no uncaught error, CSP violation (Cornerstone's measurement labels included),
    // dialog, console error or failed request but the 401 of `/api/me` before the login,
    // and — while the archive does not take key images — the draft refused with them.
    assert_page_clean(&r, "reading-tools.mjs");
    let key_images_refused = r["keyImages"]["error"]
        .as_str()
        .is_some_and(|e| e.contains("without its 1 key image(s)"));
    let expected = |url: &str, status: u64| {
        (status == 401 && url.ends_with("/api/me"))
            || (key_images_refused && (status == 400 || status == 422) && url.ends_with("/report"))
    };
    let bad: Vec<&Value> = r["console"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] == "error" || m["type"] == "warning")
        .filter(|m| {
            let text = m["text"].as_str().unwrap();
            let status = [401, 400, 422]
                .into_iter()
                .find(|s| text.contains(&format!("status of {s}")));
            !status.is_some_and(|s| expected(m["url"].as_str().unwrap(), s))
        })
        .collect();
    assert!(bad.is_empty(), "console errors/warnings: {bad:#?}");
    let failed: Vec<&Value> = r["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| {
            let status = q["status"].as_u64().unwrap();
            (status == 0 || status >= 400) && !expected(q["url"].as_str().unwrap(), status)
        })
        .collect();
    assert!(failed.is_empty(), "failed requests: {failed:#?}");

    // Thumbnails: one decoded JPEG per series, through a blob: URL.
    let thumbs = r["thumbnails"].as_array().unwrap();
    assert_eq!(thumbs.len(), 1, "{thumbs:#?}");
    for t in thumbs {
        assert_eq!(t["state"], "ready", "{t}");
        assert_eq!(t["src"], "blob:", "{t}");
        assert!(t["naturalWidth"].as_u64().unwrap() > 0, "{t}");
    }
    assert_eq!(thumbs[0]["series"], ct_series.as_str());
    assert!(
        r["requests"].as_array().unwrap().iter().any(|q| q["url"]
            .as_str()
            .unwrap()
            .contains(&format!("/series/{ct_series}/thumbnail"))
            && q["status"] == 200
            && q["contentType"] == "image/jpeg"),
        "the thumbnail request"
    );

    // Zoom, rotate, flip, reset.
    let initial = &r["steps"]["initial"]["stats"];
    assert_picture(initial, "CT slice 1");
    let zoom = &r["steps"]["zoom"];
    assert_eq!(zoom["before"], "1.00");
    assert_ne!(zoom["state"]["zoom"], "1.00", "right drag zooms: {zoom}");
    assert_changed(initial, &zoom["stats"], "zoom");
    let zoom_key = r["steps"]["zoomKey"]["state"]["zoom"].as_str().unwrap();
    assert_ne!(zoom_key, zoom["state"]["zoom"].as_str().unwrap(), "+ zooms");
    assert_eq!(r["steps"]["rotate"]["state"]["rotation"], "90");
    assert_changed(&zoom["stats"], &r["steps"]["rotate"]["stats"], "rotate");
    assert_eq!(r["steps"]["flip"]["state"]["flip"], "h");
    assert_changed(
        &r["steps"]["rotate"]["stats"],
        &r["steps"]["flip"]["stats"],
        "flip",
    );
    let reset = &r["steps"]["reset"]["state"];
    assert_eq!(
        (&reset["rotation"], &reset["flip"], &reset["zoom"]),
        (&"0".into(), &"".into(), &"1.00".into()),
        "reset: {reset}"
    );

    // Cine.
    let cine = &r["steps"]["cine"];
    assert_eq!(cine["playing"], "true");
    assert_eq!(cine["fps"], "10");
    assert!(
        cine["indicesSeen"].as_array().unwrap().len() >= 3,
        "cine did not advance: {cine}"
    );
    let stopped = &r["steps"]["cineStopped"];
    assert_eq!(stopped["playing"], "false");
    assert_eq!(stopped["after"], stopped["stoppedAt"], "cine stopped");

    // 1×2: two viewports with images.
    let l12 = &r["layout12"];
    assert_eq!(l12["viewer"]["layout"], "1x2");
    for n in 0..2 {
        let c = cell(&l12["cells"], n);
        assert_eq!(c["hidden"], false, "{c}");
        assert_eq!(c["state"], "ready", "{c}");
    }
    assert_eq!(cell(&l12["cells"], 2)["hidden"], true);
    assert_picture(&l12["left"], "1×2 left");
    assert_picture(&l12["right"], "1×2 right");

    // The priors: the US clip of clinic A and the CT of clinic B, newest first.
    let priors = r["priors"].as_array().unwrap();
    let studies: Vec<&str> = priors
        .iter()
        .map(|p| p["study"].as_str().unwrap())
        .collect();
    assert_eq!(studies, [us_study.as_str(), PRIOR_STUDY], "{priors:#?}");
    let prior_text = priors[1]["text"].as_str().unwrap();
    assert!(
        prior_text.contains("2023-01-05") && prior_text.contains("Clinic B"),
        "{prior_text}"
    );
    let opened = cell(&r["prior"]["cells"], 1);
    assert_eq!(opened["study"], PRIOR_STUDY, "{opened}");
    assert_eq!(opened["prior"], "true");
    assert_eq!(opened["state"], "ready");
    assert!(
        opened["label"]
            .as_str()
            .unwrap()
            .starts_with("Prior 2023-01-05 CT"),
        "{opened}"
    );
    assert_picture(&r["prior"]["picture"], "the prior");

    // Synchronised scrolling, then not.
    let sync = &r["sync"];
    assert_eq!(sync["state"], "on");
    let (before, after) = (indices(&sync["before"]), indices(&sync["after"]));
    assert_ne!(after[0], before[0], "the wheel scrolled the first: {sync}");
    assert_eq!(after[1], after[0], "the prior followed: {sync}");
    assert_changed(
        &sync["rightBefore"],
        &sync["rightChanged"],
        "the prior scrolled",
    );
    let off = &r["syncOff"];
    assert_eq!(off["state"], "off");
    let (before, after) = (indices(&off["before"]), indices(&off["after"]));
    assert_ne!(after[0], before[0], "{off}");
    assert_eq!(
        after[1], before[1],
        "not synchronised: the prior stays: {off}"
    );

    // Measurements drawn with the mouse, with their values.
    assert_eq!(r["toolAfterM"], "length");
    let m = &r["measurements"];
    assert_eq!(m["count"], "2", "{m}");
    let list = m["list"].as_array().unwrap();
    let length = list.iter().find(|x| x["tool"] == "Length").expect("length");
    let value = length["value"].as_str().unwrap();
    let mm: f64 = value
        .strip_suffix(" mm")
        .unwrap_or_else(|| panic!("length in mm: {value}"))
        .parse()
        .unwrap();
    assert!(mm > 10.0 && mm < 400.0, "{value}");
    let ellipse = list
        .iter()
        .find(|x| x["tool"] == "EllipticalROI")
        .expect("ellipse");
    let value = ellipse["value"].as_str().unwrap();
    assert!(
        value.starts_with("mean ") && value.contains(" SD ") && value.contains("HU"),
        "{value}"
    );
    assert!(m["svgShapes"].as_u64().unwrap() >= 2, "{m}");
    let boxes: Vec<&str> = m["textBoxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(boxes.iter().any(|t| t.ends_with(" mm")), "{boxes:?}");
    assert!(boxes.iter().any(|t| t.contains("Mean:")), "{boxes:?}");

    // An angle and a rectangle ROI; Delete removes the newest.
    let more = &r["moreMeasurements"];
    assert_eq!(more["count"], "4", "{more}");
    let value_of = |tool: &str| -> String {
        more["list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["tool"] == tool)
            .unwrap_or_else(|| panic!("{tool}: {more}"))["value"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let angle = value_of("Angle");
    let degrees: f64 = angle.strip_suffix('°').unwrap().parse().unwrap();
    assert!(degrees > 0.0 && degrees < 180.0, "{angle}");
    assert!(value_of("RectangleROI").starts_with("mean "), "{more}");
    let deleted = &r["afterDelete"];
    assert_eq!(deleted["count"], "3", "{deleted}");
    assert!(
        !deleted["list"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["tool"] == "RectangleROI"),
        "{deleted}"
    );

    // The key image, with the draft.
    let k = &r["keyImages"];
    assert_eq!(k["count"], "1", "{k}");
    assert_eq!(k["mark"], "★ Key image");
    assert_eq!(k["list"][0]["frame"], "1");
    assert!(
        k["status"].as_str().unwrap().starts_with("Draft saved"),
        "{k}"
    );
    assert_eq!(k["reportState"], "draft");
    // The archive keeps them with the draft (`key_images`), and gives them back.
    assert!(!key_images_refused, "the draft refused the key image: {k}");
    assert_eq!(k["error"], "", "{k}");
    let saved = k["saved"].as_array().unwrap_or_else(|| panic!("{k}"));
    assert_eq!(saved.len(), 1, "{k}");
    assert_eq!(saved[0]["sop_instance_uid"], k["list"][0]["sop"]);
    assert_eq!(saved[0]["series_instance_uid"], ct_series.as_str());
    assert_eq!(saved[0]["frame"], 1);
    let back = &r["keyImagesAfterReload"];
    assert_eq!(back["count"], "1", "after a reload: {back}");
    assert_eq!(back["list"][0]["sop"], k["list"][0]["sop"]);

    // 2×2 and back.
    let l22 = &r["layout22"];
    assert_eq!(l22["viewer"]["layout"], "2x2");
    for n in 0..4 {
        let c = cell(&l22["cells"], n);
        assert_eq!(
            (&c["hidden"], &c["state"]),
            (&false.into(), &"ready".into()),
            "{c}"
        );
    }
    let back = &r["layoutBack"];
    assert_eq!(back["viewer"]["layout"], "1x2");
    assert_eq!(
        cell(&back["cells"], 1)["study"],
        PRIOR_STUDY,
        "the prior stays"
    );

    // The US clip (multi-frame, the patient's other prior) plays in the second viewport.
    let us = &r["usCine"];
    assert_eq!(us["study"], us_study.as_str());
    assert_eq!(us["cell"]["count"], 10, "ten frames: {us}");
    assert_eq!(us["active"], "1", "clicked: the second viewport is active");
    assert_eq!(us["playing"], "true");
    assert!(
        us["indicesSeen"].as_array().unwrap().len() >= 3,
        "the clip did not play: {us}"
    );
    assert_picture(&us["picture"], "US frame");

    // The help lists the tools.
    let help: Vec<&str> = r["help"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    for want in [
        "mLeft drag: length measurement",
        "SpaceCine",
        "Shift + 1 / 2 / 3Layout",
        "kMark",
        "sSynchronised",
    ] {
        assert!(help.iter().any(|h| h.starts_with(want)), "{want}: {help:?}");
    }

    // Both screens: no page scrolling, both viewports drawn.
    assert_picture(&r["at1080"]["left"], "1920×1080 left");
    assert_picture(&r["at1080"]["right"], "1920×1080 right");
    assert!(r["at1080"]["scroll"]["w"].as_u64().unwrap() <= 1920);
    assert!(r["at1080"]["scroll"]["h"].as_u64().unwrap() <= 1080);
    assert!(r["at800"]["scroll"]["w"].as_u64().unwrap() <= 1280);
    assert!(r["at800"]["scroll"]["h"].as_u64().unwrap() <= 800);
    let width_1080 = cell(&r["at1080"]["cells"], 0)["box"]["width"]
        .as_f64()
        .unwrap();
    let width_800 = cell(&r["at800"]["cells"], 0)["box"]["width"]
        .as_f64()
        .unwrap();
    assert!(width_1080 > width_800 * 1.4, "{width_1080} vs {width_800}");

    for name in ["reading-tools.png", "reading-tools-1080.png"] {
        let size = std::fs::metadata(shots.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .len();
        assert!(size < 400 * 1024, "{name}: {size} bytes");
    }
}
