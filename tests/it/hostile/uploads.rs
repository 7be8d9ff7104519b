//! Uploads and files: the size limit, active content served sandboxed, folder files kept from
//! masters who are not members, stalled and killed uploads giving their quota back, unposted
//! attachments.

use super::*;

/// Upload sizes are limited: past the limit the request is refused before any byte is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_past_the_size_limit_are_refused() {
    let server = Server::start_with_config(
        "[limits]
max_upload_bytes = 1000
max_image_bytes = 100
",
    )
    .await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Sizes", &[]).await;
    let http = server.http(Some(&w.alice.token));
    for (path, ct, n) in [
        (format!("/v1/rooms/{room}/files?name=a"), "text/plain", 1001),
        (
            format!("/v1/rooms/{room}/attachments?name=a"),
            "text/plain",
            1001,
        ),
        (format!("/v1/rooms/{room}/image"), "image/png", 101),
    ] {
        let method = if path.ends_with("image") {
            "PUT"
        } else {
            "POST"
        };
        let r = http
            .call_raw(method, &path, Some((ct, vec![0u8; n].into())))
            .await
            .expect("http");
        assert_eq!(r.status, 422, "{path}: {:?}", r.body);
        assert_eq!(r.body["error"]["code"], "limit_exceeded");
    }
    let r = http
        .call_raw(
            "POST",
            &format!("/v1/rooms/{room}/files?name=a"),
            Some(("text/plain", vec![0u8; 1000].into())),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 201, "at the limit is fine");
}

/// An uploaded HTML or SVG file cannot run as our origin when a member opens it: downloads are
/// attachments, never sniffed, and sandboxed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_uploads_download_sandboxed_and_unsniffed() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Files", &[&w.carol.id]).await;
    let http = server.http(Some(&w.carol.token));
    for (name, ct) in [("x.html", "text/html"), ("x.svg", "image/svg+xml")] {
        let page = b"<script>fetch('/v1/admin/users')</script>".to_vec();
        let r = http
            .call_raw(
                "POST",
                &format!("/v1/rooms/{room}/attachments?name={name}"),
                Some((ct, page.into())),
            )
            .await
            .expect("http");
        assert_eq!(r.status, 201, "{:?}", r.body);
        let file = r.body["file"].as_str().expect("file").to_owned();
        let got = http
            .get(&format!("/v1/rooms/{room}/files/{file}"))
            .await
            .expect("http");
        assert_eq!(got.status, 200);
        assert_eq!(got.header("x-content-type-options"), Some("nosniff"));
        assert!(
            got.header("content-security-policy")
                .is_some_and(|c| c.contains("sandbox")),
            "{:?}",
            got.headers
        );
        assert!(got
            .header("content-disposition")
            .is_some_and(|d| d.starts_with("attachment")));
    }
}

/// G9, F1: a master who is not a member manages the group but does not read its files — a
/// folder file answers `not_member` (it answered 200); the profile image stays theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_who_is_not_a_member_gets_no_folder_file() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = managed_group(&mut alice, "Managed", &[&w.carol.id]).await;
    let carol = server.http(Some(&w.carol.token));
    let r = carol
        .call_raw(
            "POST",
            &format!("/v1/rooms/{room}/files?name=plan.txt"),
            Some(("text/plain", b"plan".to_vec().into())),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 201, "{:?}", r.body);
    let file = r.body["file"].as_str().expect("file").to_owned();
    let alice_http = server.http(Some(&w.alice.token));
    let png = vec![7u8; 64];
    let r = alice_http
        .call_raw(
            "PUT",
            &format!("/v1/rooms/{room}/image"),
            Some(("image/png", png.clone().into())),
        )
        .await
        .expect("http");
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = alice_http
        .get(&format!("/v1/rooms/{room}/files/{file}"))
        .await
        .expect("http");
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "not_member");
    let r = alice_http
        .get(&format!("/v1/rooms/{room}/image"))
        .await
        .expect("http");
    assert_eq!((r.status, r.bytes.as_ref()), (200, &png[..]));
    let r = carol
        .get(&format!("/v1/rooms/{room}/files/{file}"))
        .await
        .expect("http");
    assert_eq!((r.status, r.bytes.as_ref()), (200, &b"plan"[..]));
}

/// A stalled upload cannot pin the quota: a body that announces 900 bytes, sends 10 and stalls
/// holds its reservation only until `upload_idle_secs` (here 3) passes with no byte — then a
/// neighbour's upload that did not fit goes through. A user has at most
/// `max_uploads_per_user` (here 2) uploads in flight: the third is 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_uploads_give_the_quota_back() {
    use tokio::io::AsyncWriteExt;
    let server =
        Server::start_with_config("[limits]\nupload_idle_secs = 3\nmax_uploads_per_user = 2\n")
            .await;
    let w = world(&server).await;
    set_settings(
        &server.http(Some(&w.acme_key)),
        serde_json::json!({ "shared_storage_quota": 1000 }),
    )
    .await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Stalls", &[&w.bob.id]).await;
    let stall = |token: String| {
        let addr = server.addr.clone();
        let room = room.clone();
        async move {
            let mut tcp = tokio::net::TcpStream::connect(addr.as_str())
                .await
                .expect("tcp");
            let head = format!(
                "POST /v1/rooms/{room}/attachments?name=s HTTP/1.1\r\nHost: x\r\n\
                 Authorization: Bearer {token}\r\nContent-Type: text/plain\r\n\
                 Content-Length: 450\r\n\r\n0123456789"
            );
            tcp.write_all(head.as_bytes()).await.expect("write");
            tcp
        }
    };
    // Two stalls of alice's hold 900 of the 1,000 bytes; a third is refused at once.
    let _one = stall(w.alice.token.clone()).await;
    let _two = stall(w.alice.token.clone()).await;
    let upload = |token: &str, n: usize| {
        let http = server.http(Some(token));
        let path = format!("/v1/rooms/{room}/attachments?name=b");
        async move {
            http.call_raw("POST", &path, Some(("text/plain", vec![7u8; n].into())))
                .await
                .expect("http")
        }
    };
    // Both stalls reached the server once their reservations show.
    let mut reserved = 0;
    for _ in 0..200 {
        reserved = storage_used(&server, &w.acme_key).await;
        if reserved == 900 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(reserved, 900, "the two stalls hold their reservations");
    let third = upload(&w.alice.token, 5).await;
    assert_eq!(third.status, 429, "{:?}", third.body);
    assert_eq!(third.body["error"]["code"], "rate_limited");
    // Bob's 200 bytes do not fit while the stalls hold their reservations ...
    let r = upload(&w.bob.token, 200).await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "quota_exceeded");
    // ... and do once the idle limit cut the stalls off.
    let mut status = 0;
    for _ in 0..200 {
        status = upload(&w.bob.token, 200).await.status;
        if status == 201 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        status, 201,
        "the stalled uploads gave their reservations back"
    );
    assert_eq!(storage_used(&server, &w.acme_key).await, 200);
}

/// An upload cut off by a SIGKILL leaves no trace once the server is back: the quota it
/// reserved is given back at start-up (the embedded store's process alone writes it) and its
/// `.part` file is removed. (They stayed forever.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_killed_mid_body_leaves_no_reservation_and_no_part_file() {
    use tokio::io::AsyncWriteExt;
    let mut server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Killed", &[]).await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr.as_str())
        .await
        .expect("tcp");
    let head = format!(
        "POST /v1/rooms/{room}/files?name=k HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: text/plain\r\nContent-Length: 100000\r\n\r\n{}",
        w.alice.token,
        "z".repeat(5_000)
    );
    tcp.write_all(head.as_bytes()).await.expect("write");
    let parts = |server: &Server| {
        std::fs::read_dir(server.data_dir.join("files/tmp"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let mut reserved = 0;
    for _ in 0..500 {
        reserved = storage_used(&server, &w.acme_key).await;
        if reserved == 100_000 && parts(&server) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        (reserved, parts(&server)),
        (100_000, 1),
        "the upload is under way"
    );
    drop(alice);
    server.restart().await;
    drop(tcp);
    assert_eq!(
        storage_used(&server, &w.acme_key).await,
        0,
        "the reservation was given back"
    );
    assert_eq!(parts(&server), 0, "the .part file was removed");
}

/// M1 (issue 16): an attachment no post takes in time — never posted, or taken by a post that
/// was refused — is removed by the files sweep with its bytes (it counted against the quota
/// forever); one a post took stays, and a post cannot take one past its time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unposted_attachments_are_removed_and_give_their_bytes_back() {
    let server = Server::start_with_config(
        "[limits]\nunposted_attachment_secs = 2\n[files]\nsweep_interval_secs = 1\n",
    )
    .await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Attachments", &[&w.bob.id]).await;
    let upload = |n: usize| {
        let http = server.http(Some(&w.alice.token));
        let path = format!("/v1/rooms/{room}/attachments?name=a");
        async move {
            let r = http
                .call_raw("POST", &path, Some(("text/plain", vec![7u8; n].into())))
                .await
                .expect("http");
            assert_eq!(r.status, 201, "{:?}", r.body);
            r.body["file"].as_str().expect("file").to_owned()
        }
    };
    let (kept, never, refused, late) = (
        upload(100).await,
        upload(200).await,
        upload(400).await,
        upload(800).await,
    );
    let post = |cmid: &str, files: Vec<String>| post_with(&room, cmid, files);
    let r = alice
        .request(post("kept", vec![kept.clone()]))
        .await
        .expect("reply");
    assert!(matches!(r, ServerFrame::Posted { .. }), "{r:?}");
    // Refused because `kept` is another post's: `refused` was taken for it all the same.
    let r = alice
        .request(post("refused", vec![refused.clone(), kept.clone()]))
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::NotFound);
    assert_eq!(storage_used(&server, &w.acme_key).await, 1500);
    let mut used = 0;
    for _ in 0..300 {
        used = storage_used(&server, &w.acme_key).await;
        if used == 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(used, 100, "only the posted attachment is left");
    let r = alice
        .request(post("late", vec![late.clone()]))
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::NotFound, "past its time");
    let http = server.http(Some(&w.bob.token));
    for (f, status) in [(&kept, 200), (&never, 404), (&refused, 404), (&late, 404)] {
        let r = http.get(&format!("/v1/rooms/{room}/files/{f}")).await;
        assert_eq!(r.expect("http").status, status, "{f}");
    }
    // A retry of the post that took `kept`, past its time: the same message, not a refusal.
    let r = alice
        .request(post("kept", vec![kept.clone()]))
        .await
        .expect("reply");
    assert!(matches!(r, ServerFrame::Posted { .. }), "{r:?}");
    let m = scrape(&server).await;
    assert_eq!(
        metric(&m, "crossroom_unposted_attachments_removed_total"),
        3.0
    );
}

/// M1 (issue 16): the uploader deletes an attachment no post took (there was no way to), its
/// bytes given back; nobody else can, nor anyone once a post took it. One post per attachment:
/// another post (or the same file twice), or a folder file, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploader_deletes_an_unposted_attachment_and_a_post_takes_one_once() {
    let server = Server::start().await;
    let w = world(&server).await;
    let mut alice = server.connect(&w.alice.token, Encoding::MsgPack).await;
    let room = group(&mut alice, "Attachments", &[&w.bob.id]).await;
    let send = |token: &str, path: String, n: usize| {
        let http = server.http(Some(token));
        async move {
            let r = http
                .call_raw("POST", &path, Some(("text/plain", vec![7u8; n].into())))
                .await
                .expect("http");
            assert_eq!(r.status, 201, "{:?}", r.body);
            r.body["file"].as_str().expect("file").to_owned()
        }
    };
    let attachment = format!("/v1/rooms/{room}/attachments?name=a");
    let dropped = send(&w.alice.token, attachment.clone(), 100).await;
    let posted = send(&w.alice.token, attachment.clone(), 200).await;
    let folder = send(
        &w.alice.token,
        format!("/v1/rooms/{room}/files?name=f"),
        400,
    )
    .await;
    assert_eq!(storage_used(&server, &w.acme_key).await, 700);
    let delete = |token: &str, f: &str| {
        let http = server.http(Some(token));
        let path = format!("/v1/rooms/{room}/attachments/{f}");
        async move { http.delete(&path).await.expect("http") }
    };
    assert_eq!(
        delete(&w.bob.token, &dropped).await.status,
        404,
        "not bob's"
    );
    assert_eq!(
        delete(&w.alice.token, &folder).await.status,
        404,
        "not an attachment"
    );
    assert_eq!(delete(&w.alice.token, &dropped).await.status, 204);
    assert_eq!(delete(&w.alice.token, &dropped).await.status, 404, "gone");
    assert_eq!(storage_used(&server, &w.acme_key).await, 600);

    let post = |cmid: &str, files: Vec<String>| post_with(&room, cmid, files);
    let r = alice
        .request(post("dropped", vec![dropped.clone()]))
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::NotFound, "deleted");
    let r = alice
        .request(post("folder", vec![folder.clone()]))
        .await
        .expect("reply");
    assert_eq!(
        error_code(&r),
        ErrorCode::NotFound,
        "a folder file is not an attachment"
    );
    let r = alice
        .request(post("twice", vec![posted.clone(), posted.clone()]))
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::InvalidArgument);
    let r = alice
        .request(post("one", vec![posted.clone()]))
        .await
        .expect("reply");
    let ServerFrame::Posted { seq, .. } = r else {
        panic!("{r:?}")
    };
    let r = alice
        .request(post("one", vec![posted.clone()]))
        .await
        .expect("reply");
    assert!(
        matches!(r, ServerFrame::Posted { seq: again, .. } if again == seq),
        "a retry: {r:?}"
    );
    let r = alice
        .request(post("two", vec![posted.clone()]))
        .await
        .expect("reply");
    assert_eq!(error_code(&r), ErrorCode::NotFound, "another post's");
    let r = delete(&w.alice.token, &posted).await;
    assert_eq!(
        (r.status, &r.body["error"]["code"]),
        (403, &serde_json::json!("forbidden"))
    );
    assert_eq!(storage_used(&server, &w.acme_key).await, 600);
}

/// A post whose client id is its text, carrying `files`.
fn post_with(room: &crossroom_protocol::RoomId, cmid: &str, files: Vec<String>) -> ClientFrame {
    ClientFrame::Post {
        id: 0,
        room: room.clone(),
        client_msg_id: cmid.into(),
        text: cmid.into(),
        attachments: files,
        mentions: vec![],
    }
}
