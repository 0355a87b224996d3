//! `<released-page height="auto">` in a real browser: the frame reports its
//! content's height and path, the element takes the height (within its
//! bounds) and fires `portal-gate:navigate`, and nothing but its own frame
//! at the portal's origin is heard.

use super::*;

/// How far the element's height may be from the content's, in CSS pixels.
const SLACK: f64 = 3.0;

/// The host page's record of `portal-gate:navigate` paths, once it holds
/// `path`.
async fn navigated_to(browser: &Browser, path: &str) -> Vec<String> {
    let wanted = serde_json::to_string(path).expect("json");
    let expression = format!(
        "JSON.parse(document.body.dataset.navigated ?? '[]').includes({wanted}) && document.body.dataset.navigated"
    );
    let list = browser
        .wait_for(&format!("portal-gate:navigate to {path}"), &expression)
        .await;
    serde_json::from_str(&list).expect("a JSON list")
}

/// The `<released-page>`'s height in the host page.
async fn element_height(browser: &Browser) -> f64 {
    let height = browser
        .script("return document.querySelector('released-page').getBoundingClientRect().height")
        .await;
    height.as_f64().expect("a number")
}

/// The framed document: its height, the frame's inner height, and its
/// scroll height, once it has loaded `path`.
async fn frame_content(browser: &Browser, path: &str) -> (f64, f64, f64) {
    browser.enter_embed().await;
    let wanted = serde_json::to_string(path).expect("json");
    let expression = format!(
        "document.readyState === 'complete' && location.pathname === {wanted} && JSON.stringify([document.documentElement.getBoundingClientRect().height, innerHeight, document.documentElement.scrollHeight])"
    );
    let measured = match browser.poll(&expression).await {
        Ok(measured) => measured,
        Err(last) => {
            let state = browser
                .script("return document.readyState + ' ' + location.href")
                .await;
            panic!("timed out waiting for {path} in the frame: {state}, last {last}");
        }
    };
    browser.leave_frames().await;
    let [content, inner, scroll]: [f64; 3] = serde_json::from_str(&measured).expect("numbers");
    (content, inner, scroll)
}

/// Poll until the element is as tall as the frame's content (within
/// [`SLACK`]); the content's height. Both are read each round: the
/// content reflows when the host page's own scrollbar comes or goes.
async fn sized_to_content(browser: &Browser, path: &str) -> f64 {
    let started = Instant::now();
    loop {
        let (content, _, _) = frame_content(browser, path).await;
        let element = element_height(browser).await;
        if (element - content).abs() <= SLACK {
            return content;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the element is {element} px tall, its content {content} px ({path})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_height_frame_fits_short_and_long_pages_and_says_where_it_is() {
    if !browser_available() {
        return;
    }
    let mut host = HostApp::bind().await;
    let gate = GateProcess::start(&gate_config(&host.origin())).await;
    host.serve(format!("http://{}", gate.addr));
    let browser = Browser::launch(CHROMIUM, CHROMEDRIVER).await;

    browser.goto(&host.page_with("/changelog/", &[])).await;
    let short = sized_to_content(&browser, "/changelog/").await;
    assert_eq!(navigated_to(&browser, "/changelog/").await, ["/changelog/"]);

    // A link inside the frame: the element follows the longer page.
    browser.enter_embed().await;
    browser
        .script("document.getElementById('archive').click(); return null")
        .await;
    browser.leave_frames().await;
    let events = navigated_to(&browser, "/changelog/archive/").await;
    assert_eq!(events, ["/changelog/", "/changelog/archive/"]);
    let long = sized_to_content(&browser, "/changelog/archive/").await;
    assert!(long > short + 1000.0, "short {short} px, long {long} px");
    let (_, inner, scroll) = frame_content(&browser, "/changelog/archive/").await;
    assert!(
        scroll <= inner + 1.0,
        "the frame scrolls: {scroll} in {inner}"
    );
    let current = browser
        .script("return document.querySelector('released-page').getAttribute('current-page')")
        .await;
    assert_eq!(current, "/changelog/archive/");
    browser
        .screenshot(&Path::new(env!("CARGO_MANIFEST_DIR")).join("target/e2e/auto-height.png"))
        .await;

    // The host sets `page` back: the frame navigates, and shrinks again.
    browser
        .script("document.querySelector('released-page').setAttribute('page', '/changelog/'); return null")
        .await;
    let back = sized_to_content(&browser, "/changelog/").await;
    assert!((back - short).abs() <= SLACK, "{back} px, was {short} px");
    let events = navigated_to(&browser, "/changelog/").await;
    assert_eq!(events.len(), 3, "{events:?}");
    browser.quit().await;
    gate.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_height_holds_and_messages_from_other_frames_are_ignored() {
    if !browser_available() {
        return;
    }
    let mut host = HostApp::bind().await;
    let gate = GateProcess::start(&gate_config(&host.origin())).await;
    host.serve(format!("http://{}", gate.addr));
    let browser = Browser::launch(CHROMIUM, CHROMEDRIVER).await;
    let extra = [("max-height", "400"), ("forger", "1")];
    browser
        .goto(&host.page_with("/changelog/archive/", &extra))
        .await;
    navigated_to(&browser, "/changelog/archive/").await;
    let (content, inner, scroll) = frame_content(&browser, "/changelog/archive/").await;
    assert!(content > 1000.0, "{content}");
    let height = element_height(&browser).await;
    assert!(
        (height - 400.0).abs() <= 1.0,
        "max-height 400, element {height} px"
    );
    assert!(
        scroll > inner + 500.0,
        "the long page scrolls inside: {scroll} in {inner}"
    );

    // Another frame of the portal on the host page (same origin as ours,
    // running the frame script, which reports its own /changelog/) forges
    // a report.
    browser
        .enter_frame("the forger frame", "document.getElementById('forger')")
        .await;
    browser
        .wait_for(
            "the forger's page",
            "document.readyState === 'complete' && 'yes'",
        )
        .await;
    browser
        .script("parent.postMessage({type: 'portal-gate:frame', height: 123, path: '/forged/'}, '*'); return null")
        .await;
    browser.leave_frames().await;
    // Our own frame: malformed reports first, then a well-formed one, which
    // arrives after the others and shows the channel works.
    browser.enter_embed().await;
    browser
        .script(
            "for (const bad of [
                {type: 'portal-gate:frame', height: '90', path: '/bad-height/'},
                {type: 'portal-gate:frame', height: 90, path: '//evil.example/'},
                {type: 'portal-gate:frame', height: 90, path: '/extra/', token: 'x'},
                {type: 'portal-gate:frame', height: Infinity, path: '/infinite/'},
              ]) parent.postMessage(bad, '*');
              parent.postMessage({type: 'portal-gate:frame', height: 250, path: '/control/'}, '*');
              return null",
        )
        .await;
    browser.leave_frames().await;
    let events = navigated_to(&browser, "/control/").await;
    // Give a straggler time to show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events_later = browser
        .script("return document.body.dataset.navigated")
        .await;
    assert_eq!(events, ["/changelog/archive/", "/control/"]);
    assert_eq!(
        events_later,
        serde_json::to_string(&events).expect("json"),
        "a late event"
    );
    let height = element_height(&browser).await;
    assert!(
        (height - 250.0).abs() <= 1.0,
        "the control report's height: {height}"
    );
    browser.quit().await;
    gate.stop().await;
}

/// With `inject_frame_script`, a portal page whose template lacks the
/// script sizes itself: the gate inserted the tag. Without it, the same
/// page stays at the element's fallback height and reports nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_frame_script_sizes_a_page_without_the_tag() {
    if !browser_available() {
        return;
    }
    let plain = PlainPortal::start().await;
    let config = |host: &HostApp, inject: bool| {
        gate_config(&host.origin())
            .replace(
                "dir = \"../examples/portal\"",
                &format!("url = \"{}\"", plain.url()),
            )
            .replace(
                "[embed]\n",
                &format!("[embed]\ninject_frame_script = {inject}\n"),
            )
    };
    let mut host = HostApp::bind().await;
    let gate = GateProcess::start(&config(&host, true)).await;
    host.serve(format!("http://{}", gate.addr));
    let browser = Browser::launch(CHROMIUM, CHROMEDRIVER).await;
    browser
        .goto(&host.page_with("/changelog/plain/", &[]))
        .await;
    navigated_to(&browser, "/changelog/plain/").await;
    let content = sized_to_content(&browser, "/changelog/plain/").await;
    assert!(content > 1500.0, "{content}");
    browser.enter_embed().await;
    let scripts = browser
        .script("return document.querySelectorAll('head > script[src=\"/embed-frame.js\"]').length")
        .await;
    assert_eq!(scripts, 1, "the tag, at the end of the head");
    browser.leave_frames().await;
    browser.quit().await;
    gate.stop().await;

    // The control: the same page, injection off.
    let mut host = HostApp::bind().await;
    let gate = GateProcess::start(&config(&host, false)).await;
    host.serve(format!("http://{}", gate.addr));
    let browser = Browser::launch(CHROMIUM, CHROMEDRIVER).await;
    browser
        .goto(&host.page_with("/changelog/plain/", &[]))
        .await;
    let (content, _, _) = frame_content(&browser, "/changelog/plain/").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let height = element_height(&browser).await;
    assert_eq!(height, 600.0, "content {content} px");
    let events = browser
        .script("return document.body.dataset.navigated ?? null")
        .await;
    assert_eq!(events, Value::Null);
    browser.quit().await;
    gate.stop().await;
}

/// A portal host whose pages do not include the frame script: every path
/// is a long HTML page.
struct PlainPortal {
    addr: SocketAddr,
}

impl PlainPortal {
    async fn start() -> PlainPortal {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let service = service_fn(|_request: Request<Incoming>| async {
                    Ok::<_, Infallible>(plain_page())
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        PlainPortal { addr }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// A long page, no script anywhere.
fn plain_page() -> Response<Full<Bytes>> {
    let paragraphs: String = (1..=60)
        .map(|n| format!("<p>Release note {n}: a line of text.</p>\n"))
        .collect();
    let html = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Plain</title></head>\n\
         <body style=\"margin:8px;font:16px/1.5 sans-serif\"><h1>Plain</h1>\n{paragraphs}</body></html>\n"
    );
    assert!(!html.contains("embed-frame"));
    let mut response = Response::new(Full::new(Bytes::from(html)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}
