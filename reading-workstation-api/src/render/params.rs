//! Rendering parameters, parsed from the query and `Accept` of a WADO-RS request
//! (PS3.18 8.3.5.1 "Rendered Media Type Query Parameters", 8.3.3 content negotiation).

use super::RenderError;

/// Default JPEG quality when the request names none: high enough for a reading preview.
pub const DEFAULT_JPEG_QUALITY: u8 = 90;

/// What a rendered frame is encoded as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// `image/jpeg` (baseline, 8-bit) with a quality from 1 to 100.
    Jpeg { quality: u8 },
    /// `image/png` (8-bit, lossless).
    Png,
}

impl OutputFormat {
    pub fn media_type(self) -> MediaType {
        match self {
            OutputFormat::Jpeg { .. } => MediaType::Jpeg,
            OutputFormat::Png => MediaType::Png,
        }
    }
}

impl Default for OutputFormat {
    fn default() -> Self {
        OutputFormat::Jpeg {
            quality: DEFAULT_JPEG_QUALITY,
        }
    }
}

/// The media types a frame can be rendered as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    Jpeg,
    Png,
}

impl MediaType {
    /// The `Content-Type` of the answer.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaType::Jpeg => "image/jpeg",
            MediaType::Png => "image/png",
        }
    }
}

impl std::fmt::Display for MediaType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The VOI LUT function of an explicit window (PS3.3 C.11.2.1.3; PS3.18 names them
/// `linear`, `linear-exact` and `sigmoid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WindowFunction {
    #[default]
    Linear,
    LinearExact,
    Sigmoid,
}

/// An explicit window, in the units after the modality LUT (Hounsfield units for CT).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub center: f64,
    pub width: f64,
    pub function: WindowFunction,
}

/// `viewport=vw,vh[,sx,sy,sw,sh]`: the rendered image fits in `width`×`height` (scaled down,
/// keeping its aspect ratio, never up), optionally after cutting out `region`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewport {
    pub width: u32,
    pub height: u32,
    pub region: Option<Region>,
}

/// The source region of a viewport, in pixels of the frame. A negative width or height
/// flips the region horizontally or vertically (PS3.18 8.3.5.1.3); `None` extends it to
/// the right or bottom edge of the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub x: u32,
    pub y: u32,
    pub width: Option<i64>,
    pub height: Option<i64>,
}

/// How to render one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderParams {
    /// 1-based frame number.
    pub frame: u32,
    pub format: OutputFormat,
    /// Overrides the object's own VOI (window or VOI LUT) for grayscale images; ignored
    /// for color images.
    pub window: Option<Window>,
    pub viewport: Option<Viewport>,
    /// Inverts the rendered grayscale or color values (after MONOCHROME1 is already shown
    /// the standard way round). Not a PS3.18 parameter: for the viewer's own requests.
    pub invert: bool,
}

impl Default for RenderParams {
    fn default() -> Self {
        RenderParams {
            frame: 1,
            format: OutputFormat::default(),
            window: None,
            viewport: None,
            invert: false,
        }
    }
}

impl RenderParams {
    /// Parses the query string of a `/rendered` request (without the `?`) and its `Accept`
    /// header.
    ///
    /// Parameters: `quality`, `window`, `viewport` (PS3.18 8.3.5.1), `accept` (the media
    /// types, which take the place of the `Accept` header when given, PS3.18 8.3.3.1), and
    /// `frame` (a 1-based frame number; not in PS3.18, whose frame-level resources carry it
    /// in the path — see [`parse_frame_number`]). `annotation` is accepted and ignored
    /// (nothing is burned in), and so are parameters this server does not know. A known
    /// parameter given twice, or a value that does not parse, is a
    /// [`RenderError::BadRequest`]; media types none of which this server renders are a
    /// [`RenderError::NotAcceptable`]. JPEG is the default media type; `quality` only
    /// matters for JPEG.
    pub fn from_query(query: &str, accept: Option<&str>) -> Result<RenderParams, RenderError> {
        let query = query.strip_prefix('?').unwrap_or(query);
        let mut quality = None;
        let mut window = None;
        let mut viewport = None;
        let mut accept_param: Option<String> = None;
        let mut frame = None;
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let value = value.trim();
            match key.as_ref() {
                "quality" => set_once(&mut quality, "quality", parse_quality(value)?)?,
                "window" => set_once(&mut window, "window", parse_window(value)?)?,
                "viewport" => set_once(&mut viewport, "viewport", parse_viewport(value)?)?,
                "frame" => set_once(&mut frame, "frame", parse_frame_number(value)?)?,
                "accept" => {
                    // Repeated `accept` parameters are one list (as repeated headers are).
                    match &mut accept_param {
                        Some(list) => {
                            list.push(',');
                            list.push_str(value);
                        }
                        None => accept_param = Some(value.to_owned()),
                    }
                }
                _ => {}
            }
        }
        let media_type = negotiate(accept_param.as_deref().or(accept))?;
        let format = match media_type {
            MediaType::Jpeg => OutputFormat::Jpeg {
                quality: quality.unwrap_or(DEFAULT_JPEG_QUALITY),
            },
            MediaType::Png => OutputFormat::Png,
        };
        Ok(RenderParams {
            frame: frame.unwrap_or(1),
            format,
            window,
            viewport,
            invert: false,
        })
    }
}

fn set_once<T>(slot: &mut Option<T>, name: &str, value: T) -> Result<(), RenderError> {
    if slot.is_some() {
        return Err(RenderError::BadRequest(format!(
            "the {name} parameter is given more than once"
        )));
    }
    *slot = Some(value);
    Ok(())
}

/// Shortens a value quoted in an error message (the reason goes back to the caller).
fn quoted(value: &str) -> String {
    let short: String = value.chars().take(40).collect();
    if short.len() < value.len() {
        format!("{short:?}…")
    } else {
        format!("{short:?}")
    }
}

/// Parses a 1-based frame number (the `{frame}` of `/frames/{frame}/rendered`, or the
/// `frame` query parameter).
pub fn parse_frame_number(value: &str) -> Result<u32, RenderError> {
    match value.trim().parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(RenderError::BadRequest(format!(
            "frame numbers start at 1, got {}",
            quoted(value)
        ))),
    }
}

fn parse_quality(value: &str) -> Result<u8, RenderError> {
    match value.parse::<u8>() {
        Ok(q @ 1..=100) => Ok(q),
        _ => Err(RenderError::BadRequest(format!(
            "quality must be an integer from 1 to 100, got {}",
            quoted(value)
        ))),
    }
}

fn parse_finite(value: &str) -> Option<f64> {
    value.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

fn parse_window(value: &str) -> Result<Window, RenderError> {
    let bad = |why: &str| {
        RenderError::BadRequest(format!(
            "window must be center,width[,function] with function linear, linear-exact or sigmoid ({why}), got {}",
            quoted(value)
        ))
    };
    let parts: Vec<&str> = value.split(',').map(str::trim).collect();
    if !(2..=3).contains(&parts.len()) {
        return Err(bad("two or three values expected"));
    }
    let center = parse_finite(parts[0]).ok_or_else(|| bad("the center is not a number"))?;
    let width = parse_finite(parts[1]).ok_or_else(|| bad("the width is not a number"))?;
    let function = match parts.get(2).map(|f| f.to_ascii_lowercase()) {
        None => WindowFunction::Linear,
        Some(f) if f == "linear" => WindowFunction::Linear,
        Some(f) if f == "linear-exact" || f == "linear_exact" => WindowFunction::LinearExact,
        Some(f) if f == "sigmoid" => WindowFunction::Sigmoid,
        Some(_) => return Err(bad("unknown function")),
    };
    // PS3.3 C.11.2.1.2: the width is at least 1 for LINEAR, above 0 for the others.
    let min_ok = match function {
        WindowFunction::Linear => width >= 1.0,
        WindowFunction::LinearExact | WindowFunction::Sigmoid => width > 0.0,
    };
    if !min_ok {
        return Err(bad(
            "the width must be at least 1 (linear) or above 0 (linear-exact, sigmoid)",
        ));
    }
    Ok(Window {
        center,
        width,
        function,
    })
}

fn parse_viewport(value: &str) -> Result<Viewport, RenderError> {
    let bad = |why: &str| {
        RenderError::BadRequest(format!(
            "viewport must be vw,vh or vw,vh,sx,sy,sw,sh ({why}), got {}",
            quoted(value)
        ))
    };
    let parts: Vec<&str> = value.split(',').map(str::trim).collect();
    if parts.len() != 2 && parts.len() != 6 {
        return Err(bad("two or six values expected"));
    }
    let size = |s: &str| match s.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(bad(
            "the viewport width and height are whole numbers of pixels, at least 1",
        )),
    };
    let width = size(parts[0])?;
    let height = size(parts[1])?;
    let region = if parts.len() == 6 {
        let origin = |s: &str| {
            if s.is_empty() {
                return Ok(0);
            }
            s.parse::<u32>()
                .map_err(|_| bad("sx and sy are whole numbers of pixels, at least 0"))
        };
        let extent = |s: &str| {
            if s.is_empty() {
                return Ok(None);
            }
            match s.parse::<i64>() {
                Ok(0) | Err(_) => Err(bad("sw and sh are non-zero whole numbers of pixels")),
                Ok(n) => Ok(Some(n)),
            }
        };
        Some(Region {
            x: origin(parts[2])?,
            y: origin(parts[3])?,
            width: extent(parts[4])?,
            height: extent(parts[5])?,
        })
    } else {
        None
    };
    Ok(Viewport {
        width,
        height,
        region,
    })
}

/// Chooses JPEG or PNG from a list of media ranges (`Accept` syntax, with q-values).
/// Nothing asked for means JPEG, the PS3.18 default.
fn negotiate(accept: Option<&str>) -> Result<MediaType, RenderError> {
    let Some(accept) = accept.map(str::trim).filter(|a| !a.is_empty()) else {
        return Ok(MediaType::Jpeg);
    };
    // For each media type we produce: the quality of the most specific range that matches
    // it (exact type over image/* over */*), RFC 9110 12.5.1.
    let mut best: [(MediaType, Option<(u8, f32)>); 2] =
        [(MediaType::Jpeg, None), (MediaType::Png, None)];
    for range in accept.split(',') {
        let mut pieces = range.split(';').map(str::trim);
        let essence = pieces.next().unwrap_or("").to_ascii_lowercase();
        if essence.is_empty() {
            continue;
        }
        let mut q = 1.0f32;
        for p in pieces {
            if let Some((name, v)) = p.split_once('=')
                && name.trim().eq_ignore_ascii_case("q")
            {
                q = match v.trim().parse::<f32>() {
                    Ok(q) if (0.0..=1.0).contains(&q) => q,
                    _ => {
                        return Err(RenderError::BadRequest(format!(
                            "malformed quality value in media range {}",
                            quoted(range.trim())
                        )));
                    }
                };
            }
        }
        for (media_type, slot) in &mut best {
            let specificity = if essence == media_type.as_str() {
                3
            } else if essence == "image/*" {
                2
            } else if essence == "*/*" {
                1
            } else {
                continue;
            };
            if slot.is_none_or(|(s, _)| specificity > s) {
                *slot = Some((specificity, q));
            }
        }
    }
    // Highest q wins; JPEG (listed first) on a tie.
    let mut chosen: Option<(MediaType, f32)> = None;
    for (media_type, slot) in best {
        if let Some((_, q)) = slot
            && q > 0.0
            && chosen.is_none_or(|(_, cq)| q > cq)
        {
            chosen = Some((media_type, q));
        }
    }
    chosen.map(|(m, _)| m).ok_or_else(|| {
        RenderError::NotAcceptable(format!(
            "cannot render as {}; rendered frames are image/jpeg or image/png",
            quoted(accept)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(query: &str) -> String {
        match RenderParams::from_query(query, None) {
            Err(RenderError::BadRequest(reason)) => reason,
            other => panic!("{query}: expected BadRequest, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_frame_one_jpeg_no_window_no_viewport() {
        let p = RenderParams::from_query("", None).unwrap();
        assert_eq!(p, RenderParams::default());
        assert_eq!(
            p.format,
            OutputFormat::Jpeg {
                quality: DEFAULT_JPEG_QUALITY
            }
        );
    }

    #[test]
    fn parses_every_parameter() {
        let p = RenderParams::from_query(
            "?quality=75&window=40,400,linear-exact&viewport=256,128&frame=3&annotation=patient",
            Some("image/jpeg"),
        )
        .unwrap();
        assert_eq!(p.frame, 3);
        assert_eq!(p.format, OutputFormat::Jpeg { quality: 75 });
        assert_eq!(
            p.window,
            Some(Window {
                center: 40.0,
                width: 400.0,
                function: WindowFunction::LinearExact
            })
        );
        assert_eq!(
            p.viewport,
            Some(Viewport {
                width: 256,
                height: 128,
                region: None
            })
        );
    }

    #[test]
    fn percent_encoded_values_and_negative_centers() {
        let p = RenderParams::from_query("window=-600%2C1500%2Csigmoid", None).unwrap();
        let w = p.window.unwrap();
        assert_eq!((w.center, w.width), (-600.0, 1500.0));
        assert_eq!(w.function, WindowFunction::Sigmoid);
    }

    #[test]
    fn viewport_with_a_source_region() {
        let p = RenderParams::from_query("viewport=100,100,10,20,-50,", None).unwrap();
        assert_eq!(
            p.viewport.unwrap().region,
            Some(Region {
                x: 10,
                y: 20,
                width: Some(-50),
                height: None
            })
        );
    }

    #[test]
    fn nonsense_is_a_bad_request_that_says_what_is_wrong() {
        assert!(bad("window=abc").contains("window"));
        assert!(bad("window=40").contains("two or three"));
        assert!(bad("window=40,0").contains("at least 1"));
        assert!(bad("window=40,400,cubic").contains("unknown function"));
        assert!(bad("window=NaN,400").contains("center"));
        assert!(bad("quality=0").contains("1 to 100"));
        assert!(bad("quality=101").contains("1 to 100"));
        assert!(bad("quality=high").contains("1 to 100"));
        assert!(bad("viewport=0,0").contains("at least 1"));
        assert!(bad("viewport=100").contains("two or six"));
        assert!(bad("viewport=100,100,0,0,0,10").contains("non-zero"));
        assert!(bad("frame=0").contains("start at 1"));
        assert!(bad("frame=-1").contains("start at 1"));
        assert!(bad("quality=50&quality=60").contains("more than once"));
        // Quoted input is shortened.
        let long = format!("window={}", "9".repeat(500));
        assert!(bad(&long).len() < 300);
    }

    #[test]
    fn media_type_negotiation() {
        let format = |q: &str, accept: Option<&str>| {
            RenderParams::from_query(q, accept)
                .map(|p| p.format.media_type())
                .map_err(|e| e.status().as_u16())
        };
        assert_eq!(format("", None), Ok(MediaType::Jpeg));
        assert_eq!(format("", Some("image/png")), Ok(MediaType::Png));
        assert_eq!(format("", Some("*/*")), Ok(MediaType::Jpeg));
        assert_eq!(format("", Some("image/*")), Ok(MediaType::Jpeg));
        assert_eq!(
            format("", Some("image/jpeg;q=0.5, image/png")),
            Ok(MediaType::Png)
        );
        assert_eq!(
            format("", Some("image/*, image/jpeg;q=0")),
            Ok(MediaType::Png)
        );
        assert_eq!(
            format("", Some("text/html, image/gif;q=0.9, */*;q=0.1")),
            Ok(MediaType::Jpeg)
        );
        // The accept query parameter takes the place of the header.
        assert_eq!(
            format("accept=image%2Fpng", Some("image/jpeg")),
            Ok(MediaType::Png)
        );
        // Nothing we render: 406.
        assert_eq!(format("", Some("image/gif")), Err(406));
        assert_eq!(format("", Some("application/dicom")), Err(406));
        assert_eq!(format("accept=image/webp", Some("image/jpeg")), Err(406));
        assert_eq!(format("", Some("image/jpeg;q=0")), Err(406));
        // A malformed q-value is a bad request.
        assert_eq!(format("", Some("image/png;q=high")), Err(400));
        // PNG ignores quality.
        assert_eq!(
            RenderParams::from_query("quality=10", Some("image/png"))
                .unwrap()
                .format,
            OutputFormat::Png
        );
    }
}
