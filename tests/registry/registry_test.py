#!/usr/bin/env python3
"""Tests of `strata images push|pull` against a real registry: Debian's
docker-registry (Distribution 2.8) on 127.0.0.1 with a configuration this test
writes, skopeo as a second client, and small local HTTP servers for what
Distribution cannot do on demand (a Bearer token flow, a connection dropped in
the middle of a blob). Every socket is on 127.0.0.1 and every wait is bounded.

usage: registry_test.py CASE BUILD_DIR; exits 0 (pass), 1 (fail), 125 (skip).
"""
import base64
import hashlib
import http.client
import http.server
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

CASE, BUILD = sys.argv[1], sys.argv[2]
STRATA = os.path.join(BUILD, "strata")
EX_DATAERR, EX_NOINPUT, EX_IOERR, EX_NOPERM, EX_USAGE = 65, 66, 74, 77, 64


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """docker-registry serving one temporary folder on 127.0.0.1."""

    def __init__(self, root, htpasswd=None, tls=None):
        self.root = root
        os.makedirs(root, exist_ok=True)
        self.port = free_port()
        self.data = os.path.join(root, "data")
        cfg = os.path.join(root, "config.yml")
        auth = ""
        if htpasswd:
            auth = f"auth:\n  htpasswd:\n    realm: strata-test\n    path: {htpasswd}\n"
        tls_cfg = f"  tls:\n    certificate: {tls[0]}\n    key: {tls[1]}\n" if tls else ""
        with open(cfg, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n"
                    f"storage:\n  filesystem:\n    rootdirectory: {self.data}\n  delete:\n    enabled: true\n"
                    f"http:\n  addr: 127.0.0.1:{self.port}\n{tls_cfg}{auth}")
        self.log = open(os.path.join(root, "registry.log"), "w")
        self.proc = subprocess.Popen(["docker-registry", "serve", cfg], stdout=self.log, stderr=subprocess.STDOUT)
        # A bound for a failure, not a timing: inside scripts/with-kvm's emulated
        # machine on a loaded host docker-registry took over 10 s to listen.
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if tls:
                    import ssl
                    c = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=1,
                                                    context=ssl._create_unverified_context())
                else:
                    c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                c.request("GET", "/v2/")
                c.getresponse().read()
                return
            except OSError:
                time.sleep(0.05)
        self.log.flush()
        with open(os.path.join(root, "registry.log")) as f:
            said = f.read()[-1500:]
        fail("docker-registry did not start (%s); its log ends: %s" %
             ("it exited with %d" % self.proc.returncode if self.proc.poll() is not None else "not listening after 180 s", said))

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    def blobs(self):
        """The blob digests the registry's storage holds."""
        d = os.path.join(self.data, "docker/registry/v2/blobs/sha256")
        out = set()
        if os.path.isdir(d):
            for pre in os.listdir(d):
                for h in os.listdir(os.path.join(d, pre)):
                    out.add("sha256:" + h)
        return out

    def blob_path(self, digest):
        h = digest.split(":")[1]
        return os.path.join(self.data, "docker/registry/v2/blobs/sha256", h[:2], h, "data")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Front:
    """A local HTTP server in front of the registry that can demand Bearer
    tokens (and serve them), drop a blob download half way, redirect blob
    downloads to another host name, or slow them down. It records what it saw."""

    def __init__(self, reg, bearer=False, drop=0, redirect=False, slow=False):
        self.reg, self.bearer, self.drop, self.redirect, self.slow = reg, bearer, drop, redirect, slow
        self.token_requests = []   # scopes asked for
        self.storage_auth = []     # Authorization headers seen on redirected downloads
        self.blob_gets = 0
        self.requests = []         # (method, path, Range header, bytes sent) of every blob GET
        front = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def reply(self, status, headers=(), body=b""):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def any(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                if self.path.startswith("/token"):
                    auth = self.headers.get("Authorization", "")
                    if auth != "Basic " + base64.b64encode(b"alice:secret").decode():
                        return self.reply(401)
                    scope = self.path.split("scope=")[1].split("&")[0] if "scope=" in self.path else ""
                    scope = urllib.parse.unquote(scope)
                    front.token_requests.append(scope)
                    return self.reply(200, [("Content-Type", "application/json")],
                                      json.dumps({"token": "tok " + scope}).encode())
                if self.path.startswith("/storage/"):
                    front.storage_auth.append(self.headers.get("Authorization"))
                    self.path = self.path[len("/storage"):]
                elif front.bearer and self.path != "/v2/" or front.bearer and self.path == "/v2/":
                    push = self.command not in ("GET", "HEAD")
                    repo = self.path.split("/")[2] + "/" + self.path.split("/")[3] if self.path.count("/") > 3 else ""
                    need = f"repository:{repo}:{'pull,push' if push else 'pull'}"
                    have = self.headers.get("Authorization", "")
                    # A pull,push token also allows pulls.
                    if have not in ("Bearer tok " + need, f"Bearer tok repository:{repo}:pull,push"):
                        return self.reply(401, [("WWW-Authenticate", f'Bearer realm="http://127.0.0.1:{front.port}/token",'
                                                 f'service="strata-test",scope="{need}"'),
                                                ("Content-Type", "application/json")],
                                          b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}')
                is_blob_get = self.command == "GET" and "/blobs/sha256:" in self.path
                if is_blob_get and front.redirect and not self.path.startswith("/v2/") is False and \
                        self.headers.get("Host", "").startswith("127.0.0.1"):
                    return self.reply(307, [("Location", f"http://localhost:{front.port}/storage{self.path}")])
                c = http.client.HTTPConnection("127.0.0.1", front.reg.port, timeout=60)
                hdrs = {k: v for k, v in self.headers.items() if k.lower() not in ("authorization", "connection", "host")}
                hdrs["Host"] = f"127.0.0.1:{front.port}"
                c.request(self.command, self.path, body=body, headers=hdrs)
                r = c.getresponse()
                data = r.read()
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                length = r.getheader("Content-Length") if self.command == "HEAD" else str(len(data))
                self.send_header("Content-Length", length or "0")
                self.end_headers()
                if self.command == "HEAD":
                    return
                if is_blob_get:
                    front.requests.append((self.command, self.path, self.headers.get("Range"), len(data)))
                big = is_blob_get and len(data) > 16 << 10
                if big:
                    front.blob_gets += 1
                if big and front.drop > 0:
                    front.drop -= 1
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if big and front.slow:
                    for i in range(0, len(data), 64 * 1024):
                        self.wfile.write(data[i:i + 64 * 1024])
                        self.wfile.flush()
                        time.sleep(0.05)
                    return
                self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = any

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a client killed mid-transfer (the sigkill case) is expected

        self.server = Server(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# A bound for a failure, not a timing: inside scripts/with-kvm's emulated machine
# on a loaded host `images push` of lazy_kill's 64 MiB mostly random image
# (compressed by an emulated CPU) passed 300 s and failed the test.
COMMAND_LIMIT_S = 900 if os.environ.get("STRATA_IN_KVM_BOX") == "1" else 300


def strata(home, *args, env=None, expect=0):
    e = dict(os.environ, STRATA_HOME=home)
    for k in ("STRATA_REGISTRY_CREDS", "DOCKER_CONFIG", "STRATA_REGISTRY_AUTH_FILE"):
        e.pop(k, None)
    e["HOME"] = home  # no ~/.docker/config.json of the user's
    if env:
        e.update(env)
    r = subprocess.run([STRATA, *args], env=e, capture_output=True, text=True, timeout=COMMAND_LIMIT_S)
    if expect is not None and r.returncode != expect:
        fail(f"strata {' '.join(args)}: exit {r.returncode}, wanted {expect}\nstdout: {r.stdout}\nstderr: {r.stderr}")
    return r


def stats(r):
    """The counters of the summary line a push or pull prints on stderr."""
    line = [l for l in r.stderr.splitlines() if l.startswith("strata: blobs uploaded")][0]
    n = [int(x) for x in re.findall(r"\d+", line)]
    return {"uploaded": n[0], "skipped": n[2], "mounted": n[3], "downloaded": n[4], "downloaded_bytes": n[5], "reused": n[6]}


def make_raw(path, mib, seed):
    """Random data with zero stretches (so layers have holes and zero ranges)."""
    rnd = random.Random(seed)
    with open(path, "wb") as f:
        for i in range(mib * 4):
            f.write(bytes(256 * 1024) if i % 3 == 1 else rnd.randbytes(256 * 1024))


def export_raw(home, name, path):
    strata(home, "images", "export", name, path, "-O", "raw")
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def store_is_clean(home, what):
    """Nothing recorded: no image, no layer file, no layer left under tmp/."""
    r = strata(home, "images", "list", "--json")
    check(json.loads(r.stdout or "[]") == [], f"{what}: an image was recorded: {r.stdout}")
    layers = os.listdir(os.path.join(home, "layers")) if os.path.isdir(os.path.join(home, "layers")) else []
    check(layers == [], f"{what}: layer files were left in the store: {layers}")
    tmp = [n for n in os.listdir(os.path.join(home, "tmp")) if n != "registry"]
    check(tmp == [], f"{what}: files were left in tmp/: {tmp}")


def setup(work, reg):
    a = os.path.join(work, "a")
    raw = os.path.join(work, "base.raw")
    make_raw(raw, 6, 1)
    strata(a, "images", "import", "base", raw, "-f", "raw")
    # A second image sharing base's layer: a clone's (empty) top frozen over it.
    # (Growing the clone gives it its own, empty, top layer.)
    strata(a, "disks", "create", "d", "--image", "base")
    strata(a, "disks", "resize", "d", "--size", "8M")
    strata(a, "images", "create", "two", "--source-disk", "d")
    return a


def registry_manifest(reg, repo, tag):
    """The OCI image manifest reg holds for repo:tag, asked of it directly."""
    conn = http.client.HTTPConnection("127.0.0.1", reg.port, timeout=10)
    conn.request("GET", f"/v2/{repo}/manifests/{tag}", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    return json.loads(conn.getresponse().read())


def case_push_pull(work):
    reg = Registry(os.path.join(work, "reg"))
    try:
        a = setup(work, reg)
        b = os.path.join(work, "b")
        ref = f"{reg.host}/team/base:v1"
        r = strata(a, "images", "push", "base", ref, "--insecure")
        s = stats(r)
        check(s["uploaded"] == 2 and s["skipped"] == 0, f"first push uploads layer and config: {s}")
        blobs_after_first = reg.blobs()
        # (The registry stores manifests as blobs too.)
        check(len(blobs_after_first) == 3, f"registry holds layer, config and manifest: {blobs_after_first}")
        # Pull into another store and compare the bytes.
        r = strata(b, "images", "pull", ref, "--insecure")
        check(r.stdout.startswith("base "), r.stdout)
        check(export_raw(a, "base", os.path.join(work, "a.raw")) == export_raw(b, "base", os.path.join(work, "b.raw")),
              "pulled image differs from the pushed one")
        d = json.loads(strata(b, "images", "describe", "base", "--json").stdout)
        check(d["size"] == 6 << 20, f"size {d}")
        # The pull computed the layer's content digest as it wrote the layer:
        # the same as the pushing store's, and the layer checks clean.
        def layer_file(home):
            lid = json.loads(strata(home, "images", "describe", "base", "--json").stdout)["layers"][0]
            return os.path.join(home, "layers", lid)
        info = lambda home: json.loads(strata(home, "img", "info", layer_file(home), "--output", "json").stdout)
        ia, ib = info(a), info(b)
        check(ib.get("digest") and ia.get("digest") == ib["digest"], f"content digests: {ia.get('digest')} {ib.get('digest')}")
        strata(b, "img", "check", layer_file(b))
        check(os.listdir(os.path.join(b, "tmp", "registry")) == [], "a recorded pull leaves nothing under tmp/registry")
        # A second pull under another name reuses the layer: nothing downloaded.
        s = stats(strata(b, "images", "pull", ref, "copy", "--insecure"))
        check(s["downloaded"] == 0 and s["reused"] == 1, f"repeated pull reuses the layer: {s}")
        # The pull's blobs are gone from tmp/ once recorded.
        check(os.listdir(os.path.join(b, "tmp", "registry")) == [], "pull left its blobs in tmp/registry")
        # The two-layer image shares base's layer: only its new layer and config are sent.
        ref2 = f"{reg.host}/team/two:v1"
        s = stats(strata(a, "images", "push", "two", ref2, "--insecure"))
        check(s["uploaded"] == 2 and s["mounted"] == 1, f"second push mounts base's layer, uploads 2: {s}")
        new = reg.blobs() - blobs_after_first
        check(len(new) == 3, f"the second push stored its new layer, config and manifest only: {new}")
        # Pushing it again sends nothing.
        s = stats(strata(a, "images", "push", "two", ref2, "--insecure"))
        check(s["uploaded"] == 0, f"a repeated push uploads nothing: {s}")
        s = stats(strata(b, "images", "pull", ref2, "--insecure"))
        check(s["reused"] == 1 and s["downloaded"] == 1, f"pull of two reuses base's layer: {s}")
        check(export_raw(a, "two", os.path.join(work, "a2.raw")) == export_raw(b, "two", os.path.join(work, "b2.raw")),
              "pulled two-layer image differs")
        # By digest.
        digest = r.stdout.split("@")[1].strip()
        strata(b, "images", "pull", f"{reg.host}/team/base@{digest}", "pinned", "--insecure")
        # The pulled image can be pushed from the second store (its record names the blob).
        s = stats(strata(b, "images", "push", "base", f"{reg.host}/other/base:v1", "--insecure"))
        check(s["uploaded"] == 1 and s["mounted"] == 1, f"push from the pulling store mounts the layer: {s}")
        # Records of layers gc removed are pruned by the next pull or push;
        # those of layers still in the store stay.
        records = lambda: sorted(n[:-5] for n in os.listdir(os.path.join(b, "registry", "layers")))
        check(len(records()) == 2, f"one record per pulled layer: {records()}")
        for name in ("two", "copy", "pinned"):
            strata(b, "images", "delete", name)
        strata(b, "images", "pull", ref, "again", "--insecure")
        left = sorted(os.listdir(os.path.join(b, "layers")))
        check(records() == left, f"records {records()} for layers {left}")
        check(len(records()) == 1, f"two's layer and its record are gone: {records()}")
    finally:
        reg.stop()


def case_skopeo(work):
    if shutil.which("skopeo") is None:
        print("SKIP: no skopeo")
        sys.exit(125)
    reg = Registry(os.path.join(work, "reg"))
    try:
        a = setup(work, reg)
        ref = f"{reg.host}/team/two:v1"
        r = strata(a, "images", "push", "two", ref, "--insecure")
        digest = r.stdout.split("@")[1].strip()
        raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", "docker://" + ref],
                             capture_output=True, text=True, timeout=60)
        check(raw.returncode == 0, f"skopeo inspect --raw: {raw.stderr}")
        check("sha256:" + hashlib.sha256(raw.stdout.encode()).hexdigest() == digest, "skopeo sees another manifest")
        m = json.loads(raw.stdout)
        check(m["artifactType"] == "application/vnd.strata.image.v1" and len(m["layers"]) == 2, f"manifest {m}")
        for l in m["layers"]:
            check(l["annotations"]["org.strata.layer.content-digest"].startswith("sha256:"), f"layer annotations {l}")
        cfg = subprocess.run(["skopeo", "inspect", "--raw", "--config", "--tls-verify=false", "docker://" + ref],
                             capture_output=True, text=True, timeout=60)
        check(cfg.returncode == 0 and json.loads(cfg.stdout)["name"] == "two", f"skopeo inspect --config: {cfg.stdout} {cfg.stderr}")
        layout = os.path.join(work, "layout")
        cp = subprocess.run(["skopeo", "copy", "--src-tls-verify=false", "docker://" + ref, "oci:" + layout + ":v1"],
                            capture_output=True, text=True, timeout=120)
        check(cp.returncode == 0, f"skopeo copy: {cp.stderr}")
        index = json.load(open(os.path.join(layout, "index.json")))
        check(index["manifests"][0]["digest"] == digest, f"the OCI layout holds another manifest: {index}")
        for l in m["layers"] + [m["config"]]:
            p = os.path.join(layout, "blobs", "sha256", l["digest"].split(":")[1])
            check("sha256:" + hashlib.sha256(open(p, "rb").read()).hexdigest() == l["digest"], f"blob {l['digest']}")
    finally:
        reg.stop()


def put_manifest(reg, repo, tag, manifest, blobs=()):
    c = http.client.HTTPConnection("127.0.0.1", reg.port, timeout=10)
    for b in blobs:
        d = "sha256:" + hashlib.sha256(b).hexdigest()
        c.request("POST", f"/v2/{repo}/blobs/uploads/")
        r = c.getresponse(); r.read()
        loc = r.getheader("Location")
        loc = loc[loc.index("/v2/"):] if loc.startswith("http") else loc
        c.request("PUT", loc + ("&" if "?" in loc else "?") + "digest=" + d, body=b,
                  headers={"Content-Type": "application/octet-stream"})
        r = c.getresponse(); r.read()
        check(r.status == 201, f"blob upload: {r.status}")
    body = json.dumps(manifest).encode()
    c.request("PUT", f"/v2/{repo}/manifests/{tag}", body=body,
              headers={"Content-Type": manifest["mediaType"]})
    r = c.getresponse(); r.read()
    check(r.status == 201, f"manifest upload: {r.status}")


def forge_chunk_digest(blob):
    """The blob with its first chunk's SHA-256 in the index zeroed and the
    trailer's digest recomputed, so the file is self-consistent; and the index."""
    import struct
    magic, m_off, m_len = blob[-64:-56], *struct.unpack("<QQ", blob[-56:-40])
    index = blob[m_off:m_off + m_len].decode()
    at = index.index('"chunks"')
    hit = re.search(r'"[0-9a-f]{64}"', index[at:])
    index = (index[:at + hit.start()] + '"' + "0" * 64 + '"' + index[at + hit.end():]).encode()
    body = blob[:m_off] + index
    head = magic + struct.pack("<QQ", m_off, m_len)
    return body + head + hashlib.sha256(body + head).digest() + bytes(8), index


def case_bad_input(work):
    reg = Registry(os.path.join(work, "reg"))
    try:
        a = setup(work, reg)
        b = os.path.join(work, "b")
        strata(b, "images", "list")
        # A registry nobody answers on: 69 after the bounded retries.
        r = strata(a, "images", "push", "base", f"127.0.0.1:{free_port()}/team/x:v1", "--insecure", expect=69)
        check("cannot reach the registry" in r.stderr, r.stderr)
        # A malformed reference is a usage error.
        strata(b, "images", "pull", "no-registry-here", "--insecure", expect=EX_USAGE)
        # An unknown REF: 66, nothing recorded.
        r = strata(b, "images", "pull", f"{reg.host}/team/none:v1", "--insecure", expect=EX_NOINPUT)
        check("not in the registry" in r.stderr and "MANIFEST_UNKNOWN" in r.stderr, r.stderr)
        store_is_clean(b, "unknown ref")
        # A manifest of another artifact type (a container-ish image): 65.
        cfg = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
        put_manifest(reg, "team/container", "v1", {
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": "sha256:" + hashlib.sha256(cfg).hexdigest(), "size": len(cfg)},
            "layers": []}, blobs=[cfg])
        r = strata(b, "images", "pull", f"{reg.host}/team/container:v1", "--insecure", expect=EX_DATAERR)
        check("is not a strata image" in r.stderr, r.stderr)
        store_is_clean(b, "wrong artifact type")
        # A layer blob whose bytes do not match its digest: 65, nothing recorded.
        ref = f"{reg.host}/team/base:v1"
        r = strata(a, "images", "push", "base", ref, "--insecure")
        m = json.loads(subprocess.run(["curl", "-s", "-H", "Accept: application/vnd.oci.image.manifest.v1+json",
                                       f"http://{reg.host}/v2/team/base/manifests/v1"], capture_output=True).stdout)
        layer = m["layers"][0]["digest"]
        path = reg.blob_path(layer)
        good = open(path, "rb").read()
        bad = bytearray(good)
        bad[len(bad) // 2] ^= 0xff
        open(path, "wb").write(bad)
        r = strata(b, "images", "pull", ref, "--insecure", expect=EX_DATAERR)
        check("refused" in r.stderr and layer in r.stderr, r.stderr)
        store_is_clean(b, "digest mismatch")
        # A truncated blob (the registry serves fewer bytes than the manifest says).
        open(path, "wb").write(good[: len(good) // 3])
        r = strata(b, "images", "pull", ref, "--insecure", expect=None)
        check(r.returncode in (EX_DATAERR, EX_IOERR), f"truncated blob: exit {r.returncode}: {r.stderr}")
        check("truncated" in r.stderr or "refused" in r.stderr, r.stderr)
        store_is_clean(b, "truncated blob")
        # Restored, the same pull succeeds.
        open(path, "wb").write(good)
        strata(b, "images", "pull", ref, "--insecure")
        # A blob that matches its digest but whose chunk index lies about a
        # chunk's SHA-256 (a pusher's fault, not the transport's): a pull
        # refuses it (65) and records nothing; a lazy pull records it but a
        # fill refuses the chunk and leaves the layer incomplete.
        forged, index = forge_chunk_digest(good)
        liar = json.loads(json.dumps(m))
        liar["layers"][0]["digest"] = "sha256:" + hashlib.sha256(forged).hexdigest()
        liar["layers"][0]["size"] = len(forged)
        liar["layers"][0]["annotations"]["org.strata.layer.index-digest"] = "sha256:" + hashlib.sha256(index).hexdigest()
        put_manifest(reg, "team/base", "liar", liar, blobs=[forged])
        c = os.path.join(work, "c")
        r = strata(c, "images", "pull", f"{reg.host}/team/base:liar", "--insecure", expect=EX_DATAERR)
        check("SHA-256 does not match" in r.stderr, r.stderr)
        store_is_clean(c, "a lying chunk index")
        strata(c, "images", "pull", f"{reg.host}/team/base:liar", "--insecure", "--lazy")
        r = strata(c, "images", "fill", "base", expect=EX_DATAERR)
        check("SHA-256 does not match its index" in r.stderr, r.stderr)
        check(len(lazy_state(c)) == 2, "a refused fill leaves the layer incomplete")
        # A chunk index that does not match the manifest's annotation: a lazy
        # pull refuses it (65) and records nothing.
        liar["layers"][0]["annotations"]["org.strata.layer.index-digest"] = "sha256:" + "0" * 64
        put_manifest(reg, "team/base", "liar2", liar)
        d = os.path.join(work, "d")
        r = strata(d, "images", "pull", f"{reg.host}/team/base:liar2", "--insecure", "--lazy", expect=EX_DATAERR)
        check("does not match its digest in the manifest" in r.stderr, r.stderr)
        store_is_clean(d, "a chunk index that does not match the manifest")
        check(lazy_state(d) == [], f"no lazy description left: {lazy_state(d)}")
    finally:
        reg.stop()


def case_auth_basic(work):
    os.makedirs(work + "/reg", exist_ok=True)
    hp = os.path.join(work, "reg", "htpasswd")
    with open(hp, "w") as f:
        f.write(subprocess.run(["htpasswd", "-Bbn", "alice", "secret"], capture_output=True, text=True, check=True).stdout)
    reg = Registry(os.path.join(work, "reg"), htpasswd=hp)
    try:
        a = setup(work, reg)
        b = os.path.join(work, "b")
        ref = f"{reg.host}/team/base:v1"
        r = strata(a, "images", "push", "base", ref, "--insecure", expect=EX_NOPERM)
        check("needs credentials" in r.stderr, r.stderr)
        r = strata(a, "images", "push", "base", ref, "--insecure", "--creds", "alice:wrong", expect=EX_NOPERM)
        check("refused the credentials of user 'alice'" in r.stderr, r.stderr)
        strata(a, "images", "push", "base", ref, "--insecure", "--creds", "alice:secret")
        strata(b, "images", "pull", ref, "none", "--insecure", expect=EX_NOPERM)
        strata(b, "images", "pull", ref, "e", "--insecure", env={"STRATA_REGISTRY_CREDS": "alice:secret"})
        docker = os.path.join(work, "docker")
        os.makedirs(docker)
        with open(os.path.join(docker, "config.json"), "w") as f:
            json.dump({"auths": {reg.host: {"auth": base64.b64encode(b"alice:secret").decode()}}}, f)
        strata(b, "images", "pull", ref, "c", "--insecure", env={"DOCKER_CONFIG": docker})
        with open(os.path.join(docker, "config.json"), "w") as f:
            json.dump({"auths": {reg.host: {"auth": base64.b64encode(b"alice:nope").decode()}}}, f)
        strata(b, "images", "pull", ref, "w", "--insecure", env={"DOCKER_CONFIG": docker}, expect=EX_NOPERM)
    finally:
        reg.stop()


def case_bearer(work):
    reg = Registry(os.path.join(work, "reg"))
    front = Front(reg, bearer=True)
    try:
        a = setup(work, reg)
        b = os.path.join(work, "b")
        ref = f"{front.host}/team/two:v1"
        r = strata(a, "images", "push", "two", ref, "--insecure", expect=EX_NOPERM)
        check("token server refused" in r.stderr, r.stderr)
        strata(a, "images", "push", "two", ref, "--insecure", "--creds", "alice:secret")
        # One token per scope for the whole command, not one per request.
        check(len(front.token_requests) == len(set(front.token_requests)), f"tokens not cached: {front.token_requests}")
        front.token_requests.clear()
        strata(b, "images", "pull", ref, "--insecure", "--creds", "alice:secret")
        check(front.token_requests == ["repository:team/two:pull"], f"pull asked for {front.token_requests}")
        check(export_raw(a, "two", work + "/a.raw") == export_raw(b, "two", work + "/b.raw"), "bearer pull differs")
    finally:
        front.stop()
        reg.stop()


def case_dropped_connection(work):
    reg = Registry(os.path.join(work, "reg"))
    front = Front(reg, drop=1)
    try:
        a = setup(work, reg)
        b = os.path.join(work, "b")
        ref = f"{front.host}/team/base:v1"
        strata(a, "images", "push", "base", ref, "--insecure")
        # Dropped once half way: the download resumes with a Range request.
        # The pull fetches the blob as several ranges (segments), so exactly
        # the dropped one is asked for twice and every other one once.
        front.requests.clear()
        s = stats(strata(b, "images", "pull", ref, "--insecure"))
        ranges = [r[2] for r in front.requests if r[3] > 16 << 10]
        repeated = [r for r in set(ranges) if ranges.count(r) > 1]
        check(front.blob_gets == len(set(ranges)) + 1 and len(repeated) == 1 and ranges.count(repeated[0]) == 2
              and s["downloaded"] == 1, f"resumed download: {front.blob_gets} GETs of ranges {ranges}, {s}")
        check(export_raw(a, "base", work + "/a.raw") == export_raw(b, "base", work + "/b.raw"), "resumed pull differs")
        # Dropped every time: 74 and nothing recorded.
        c = os.path.join(work, "c")
        front.drop = 100
        r = strata(c, "images", "pull", ref, "--insecure", expect=EX_IOERR)
        check("truncated" in r.stderr, r.stderr)
        store_is_clean(c, "dropped connections")
        # What the failed pull left under tmp/registry/ (its laid-out layer and
        # chunk marks) stays for a repeated pull; once nothing has touched it
        # for a week, any accepted pull or push removes it, and a refused one
        # (here: an unknown reference) changes nothing, week-old or not.
        tmp = os.path.join(c, "tmp", "registry")
        left = sorted(os.listdir(tmp))
        check(any(n.endswith(".layer") for n in left) and any(n.endswith(".chunks") for n in left), f"left for a repeated pull: {left}")
        none = f"{front.host}/team/none:v1"
        strata(c, "images", "pull", none, "--insecure", expect=EX_NOINPUT)
        check(sorted(os.listdir(tmp)) == left, f"a fresh leftover is kept: {os.listdir(tmp)}")
        old = time.time() - 8 * 24 * 3600
        for n in left:
            os.utime(os.path.join(tmp, n), (old, old))
        strata(c, "images", "pull", none, "--insecure", expect=EX_NOINPUT)
        check(sorted(os.listdir(tmp)) == left, f"a refused pull leaves even a week-old leftover: {os.listdir(tmp)}")
        # An accepted pull of another image (straight from the registry) removes it.
        make_raw(os.path.join(work, "other.raw"), 1, 7)
        strata(a, "images", "import", "other", os.path.join(work, "other.raw"), "-f", "raw")
        strata(a, "images", "push", "other", f"{reg.host}/team/other:v1", "--insecure")
        strata(c, "images", "pull", f"{reg.host}/team/other:v1", "--insecure")
        check(os.listdir(tmp) == [], f"a week-old leftover is removed: {os.listdir(tmp)}")
        # The registry recovers: the repeated pull completes.
        front.drop = 0
        strata(c, "images", "pull", ref, "--insecure")
    finally:
        front.stop()
        reg.stop()


def case_redirect(work):
    reg = Registry(os.path.join(work, "reg"))
    front = Front(reg, bearer=True, redirect=True)
    try:
        a = setup(work, reg)
        b = os.path.join(work, "b")
        ref = f"{front.host}/team/base:v1"
        strata(a, "images", "push", "base", ref, "--insecure", "--creds", "alice:secret")
        strata(b, "images", "pull", ref, "--insecure", "--creds", "alice:secret")
        check(len(front.storage_auth) >= 1, "no download was redirected")
        check(all(h is None for h in front.storage_auth), f"Authorization went to another host: {front.storage_auth}")
        check(export_raw(a, "base", work + "/a.raw") == export_raw(b, "base", work + "/b.raw"), "redirected pull differs")
    finally:
        front.stop()
        reg.stop()


def pull_killed_once_marked(home, ref):
    """Starts a pull of ref into home (its downloads slowed by the caller) and
    SIGKILLs it once it has marked a chunk written. Returns the store's
    tmp/registry/ and a function counting the chunks marked there."""
    e = dict(os.environ, STRATA_HOME=home, HOME=home)
    p = subprocess.Popen([STRATA, "images", "pull", ref, "--insecure"], env=e,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tmp = os.path.join(home, "tmp", "registry")

    def marked():
        # A layer's progress file goes when the layer completes: one listed a
        # moment ago may be gone when it is opened.
        total = 0
        for n in os.listdir(tmp) if os.path.isdir(tmp) else []:
            if n.endswith(".chunks"):
                try:
                    with open(os.path.join(tmp, n), "rb") as f:
                        total += f.read().count(1)
                except FileNotFoundError:
                    pass
        return total
    deadline = time.monotonic() + 120
    while marked() == 0 and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.05)
    p.kill()
    p.wait()
    check(p.returncode == -signal.SIGKILL, f"the pull was killed mid-way: {p.returncode}")
    return tmp, marked


def case_sigkill(work):
    reg = Registry(os.path.join(work, "reg"))
    front = Front(reg, slow=True)
    try:
        a = setup(work, reg)
        b = os.path.join(work, "b")
        ref = f"{front.host}/team/base:v1"
        # Killed during a push: the registry has no manifest; a retry completes.
        e = dict(os.environ, STRATA_HOME=a, HOME=a)
        p = subprocess.Popen([STRATA, "images", "push", "base", ref, "--insecure"], env=e,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        p.kill()
        p.wait()
        strata(a, "images", "push", "base", ref, "--insecure")
        # Killed during a pull (downloads are slowed to ~1.3 MB/s): nothing recorded.
        e = dict(os.environ, STRATA_HOME=b, HOME=b)
        p = subprocess.Popen([STRATA, "images", "pull", ref, "--insecure"], env=e,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            part = [n for n in os.listdir(os.path.join(b, "tmp", "registry"))] if os.path.isdir(os.path.join(b, "tmp", "registry")) else []
            # Any file but the pull's empty lock file (<key>.lock) that has data.
            if any(os.path.getsize(os.path.join(b, "tmp", "registry", n)) > 0 for n in part):
                break
            time.sleep(0.05)
        p.kill()
        p.wait()
        store_is_clean(b, "pull killed")
        front.slow = False
        s = stats(strata(b, "images", "pull", ref, "--insecure"))
        check(s["downloaded"] == 1, f"retry after kill: {s}")
        check(export_raw(a, "base", work + "/a.raw") == export_raw(b, "base", work + "/b.raw"), "pull after kill differs")
        # A larger layer (several Range segments), its pull killed once some
        # chunks are written and marked: the retry fetches only the rest.
        raw = os.path.join(work, "big.raw")
        with open(raw, "wb") as f:
            f.write(random.Random(5).randbytes(40 << 20))
        strata(a, "images", "import", "big", raw, "-f", "raw")
        bref = f"{front.host}/team/big:v1"
        strata(a, "images", "push", "big", bref, "--insecure")
        c = os.path.join(work, "c")
        front.slow = True
        tmp, marked = pull_killed_once_marked(c, bref)
        store_is_clean(c, "pull of big killed")
        front.slow = False
        full = 40 << 20
        # Each chunk marked written (1 MiB of random bytes, stored as they
        # are) is not fetched again: the retry fetches the rest, its chunk
        # index and the frames' few bytes of overhead.
        done = marked()
        s = stats(strata(c, "images", "pull", bref, "--insecure"))
        check(s["downloaded"] == 1 and done > 0 and 0 < s["downloaded_bytes"] <= full - done * (1 << 20) + (64 << 10),
              f"the retry resumes: fetched {s['downloaded_bytes']} bytes of a {full}-byte layer ({done} chunks were marked): {s}")
        print(f"the retry after the kill fetched {s['downloaded_bytes']} bytes of the {full}-byte layer")
        check(export_raw(a, "big", work + "/ab.raw") == export_raw(c, "big", work + "/cb.raw"), "resumed pull differs")
        check(os.listdir(tmp) == [], f"a recorded pull leaves nothing under tmp/registry: {os.listdir(tmp)}")
    finally:
        front.stop()
        reg.stop()


def case_resume_marks_ahead(work):
    """A repeated pull trusts no chunk mark without checking it: marks are not
    synced with the data they stand for, so after a crash a mark may be on disk
    while its chunk's data is not. A pull killed once some chunks are written,
    then every chunk marked written (what such a crash can leave at worst): the
    retry checks each marked chunk against its SHA-256, fetches those that fail,
    and the image is the one pushed."""
    reg = Registry(os.path.join(work, "reg"))
    front = Front(reg, slow=True)
    try:
        a = os.path.join(work, "a")
        raw = os.path.join(work, "big.raw")
        with open(raw, "wb") as f:
            f.write(random.Random(9).randbytes(24 << 20))
        strata(a, "images", "import", "big", raw, "-f", "raw")
        ref = f"{front.host}/team/big:v1"
        front.slow = False
        strata(a, "images", "push", "big", ref, "--insecure")
        front.slow = True
        c = os.path.join(work, "c")
        tmp, marked = pull_killed_once_marked(c, ref)
        marks = lambda: [os.path.join(tmp, n) for n in os.listdir(tmp) if n.endswith(".chunks")]
        check(len(marks()) == 1, f"one chunk file left: {os.listdir(tmp)}")
        with open(marks()[0], "r+b") as f:
            n = len(f.read())
            before = marked()
            f.seek(0)
            f.write(b"\x01" * n)
        check(before < n, f"some chunks were still unwritten when the pull was killed: {before} of {n}")
        front.slow = False
        s = stats(strata(c, "images", "pull", ref, "--insecure"))
        print(f"{before} of {n} chunks were written when the pull was killed; all marked; the retry fetched {s['downloaded_bytes']} bytes")
        check(s["downloaded_bytes"] > 0, f"the retry fetched the chunks whose marks were false: {s}")
        check(export_raw(a, "big", work + "/a.raw") == export_raw(c, "big", work + "/c.raw"), "the resumed pull differs")
    finally:
        front.stop()
        reg.stop()


def case_resume_frozen(work):
    """A pull that streamed a layer to the end (frozen) and then failed on a
    later layer leaves that layer under tmp/registry/; the repeated pull takes
    it as it is and fetches none of its chunks again."""
    reg = Registry(os.path.join(work, "reg"))
    try:
        a = setup(work, reg)
        ref = f"{reg.host}/team/two:v1"
        strata(a, "images", "push", "two", ref, "--insecure")
        m = registry_manifest(reg, "team/two", "v1")
        check(len(m["layers"]) == 2, f"two layer blobs: {m['layers']}")
        # The top layer's chunk index spoilt in the registry's storage: the
        # pull streams the bottom layer, then refuses the top one.
        top = m["layers"][1]
        path = reg.blob_path(top["digest"])
        with open(path, "rb") as f:
            good = f.read()
        at = int(top["annotations"]["org.strata.layer.index-offset"])
        bad = bytearray(good)
        bad[at] ^= 0xff
        with open(path, "wb") as f:
            f.write(bytes(bad))
        c = os.path.join(work, "c")
        r = strata(c, "images", "pull", ref, "--insecure", expect=EX_DATAERR)
        check("chunk index" in r.stderr, r.stderr)
        store_is_clean(c, "top layer refused")
        left = os.listdir(os.path.join(c, "tmp", "registry"))
        check([n for n in left if n.endswith(".layer")] and not [n for n in left if n.endswith(".chunks")],
              f"the bottom layer's complete file (and no chunk marks) is left: {left}")
        with open(path, "wb") as f:
            f.write(good)
        s = stats(strata(c, "images", "pull", ref, "--insecure"))
        bottom_index = int(m["layers"][0]["annotations"]["org.strata.layer.index-length"])
        top_size = top["size"]
        print(f"the repeated pull fetched {s['downloaded_bytes']} bytes (the bottom layer's index: {bottom_index}, the top blob: {top_size})")
        check(s["downloaded_bytes"] <= bottom_index + top_size, f"the repeated pull fetched the bottom layer's chunks again: {s}")
        check(s["downloaded"] == 1, f"the summary counts the top blob alone as downloaded: {s}")
        check(export_raw(a, "two", work + "/a.raw") == export_raw(c, "two", work + "/c.raw"), "the pulled image differs")
        check(os.listdir(os.path.join(c, "tmp", "registry")) == [], "a recorded pull leaves nothing under tmp/registry")
    finally:
        reg.stop()


def case_resume_frozen_tampered(work):
    """The complete layer an earlier pull left under tmp/registry/ is taken only
    if it still holds what its blobs make: one whose data was changed since
    (here one byte of a chunk, the header left as it was) is fetched again, and
    the image pulled is the one pushed."""
    reg = Registry(os.path.join(work, "reg"))
    try:
        a = setup(work, reg)
        ref = f"{reg.host}/team/two:v1"
        strata(a, "images", "push", "two", ref, "--insecure")
        m = registry_manifest(reg, "team/two", "v1")
        top = m["layers"][1]
        path = reg.blob_path(top["digest"])
        with open(path, "rb") as f:
            good = f.read()
        bad = bytearray(good)
        bad[int(top["annotations"]["org.strata.layer.index-offset"])] ^= 0xff
        with open(path, "wb") as f:
            f.write(bytes(bad))
        c = os.path.join(work, "c")
        strata(c, "images", "pull", ref, "--insecure", expect=EX_DATAERR)
        tmp = os.path.join(c, "tmp", "registry")
        layers = [os.path.join(tmp, n) for n in os.listdir(tmp) if n.endswith(".layer")]
        check(len(layers) == 1, f"the bottom layer's complete file is left: {os.listdir(tmp)}")
        # One byte of data in the middle of the file changed.
        os.chmod(layers[0], 0o644)
        # One byte of a chunk's data changed: where the image's block 10 (random
        # bytes) sits in the file.
        with open(os.path.join(work, "base.raw"), "rb") as f:
            f.seek(10 * 4096)
            block = f.read(4096)
        with open(layers[0], "r+b") as f:
            data = f.read()
            at = data.find(block)
            check(at > 0, "the layer file holds the image's block 10")
            f.seek(at + 100)
            f.write(bytes([data[at + 100] ^ 0x01]))
        with open(path, "wb") as f:
            f.write(good)
        r = strata(c, "images", "pull", ref, "--insecure")
        s = stats(r)
        print(f"the repeated pull fetched {s['downloaded_bytes']} bytes; stderr: {r.stderr.strip()}")
        check("fetching it again" in r.stderr, f"the pull says it refetches the changed layer: {r.stderr}")
        check(s["downloaded"] == 2, f"both blobs were fetched: {s}")
        check(export_raw(a, "two", work + "/a.raw") == export_raw(c, "two", work + "/c.raw"), "the pulled image differs")
    finally:
        reg.stop()


def case_vms_describe_bad_metrics(work):
    """vms describe of a running VM whose VMM answers /metrics with fields of
    the wrong types: exit 0, the malformed fields left out (said on stderr),
    the well-formed ones shown. The VMM is a stand-in here: the test holds the
    VM's runtime lock and serves its API socket."""
    import fcntl
    import socketserver
    import threading
    reg, c = None, None
    server = None
    try:
        reg, c = lazy_vm(work)
        sock = json.loads(strata(c, "vms", "describe", "lz", "--json").stdout)["api_socket"]
        rdir = os.path.dirname(sock)
        os.makedirs(rdir, mode=0o700, exist_ok=True)
        lock = open(os.path.join(rdir, "lock"), "w")
        fcntl.flock(lock, fcntl.LOCK_EX)
        answers = [
            {"boot_complete_us": "soon", "disks": [{"drive_id": 7, "lazy": {"chunks_total": 1}}]},
            {"boot_complete_us": 12, "disks": [{"drive_id": "data", "lazy": {"chunks_present": "three", "chunks_total": 9,
                                                                               "demand_bytes": -1, "fill_bytes": [1], "failed_fetches": 0}}]},
            {"disks": {"drive_id": "data"}},
            {"disks": [{"drive_id": "data", "lazy": [1, 2]}, "x", None]},
            [1, 2, 3],
        ]
        current = {"body": b"{}"}

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                body = current["body"] if self.path == "/metrics" else b"{}"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

            def get_request(self):
                req, _ = super().get_request()
                return req, ("local", 0)

        if os.path.exists(sock):
            os.unlink(sock)
        server = Server(sock, Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        for answer in answers:
            current["body"] = json.dumps(answer).encode()
            r = strata(c, "vms", "describe", "lz", "--json")
            d = json.loads(r.stdout)
            check(d["state"] == "running", f"the stand-in VMM counts as running: {d['state']}")
            check("left out" in r.stderr, f"a malformed answer {answer} is said: {r.stderr}")
            vmm = (d["disks"][0].get("lazy") or {}).get("vmm")
            check(vmm is None or all(isinstance(v, int) and v >= 0 for v in vmm.values()), f"only counts are taken: {vmm}")
            check(d["boot_complete_us"] is None or isinstance(d["boot_complete_us"], int), f"boot_complete_us: {d['boot_complete_us']}")
            strata(c, "vms", "describe", "lz")
        # The second answer's well-formed counters are shown.
        current["body"] = json.dumps(answers[1]).encode()
        d = json.loads(strata(c, "vms", "describe", "lz", "--json").stdout)
        check(d["boot_complete_us"] == 12 and d["disks"][0]["lazy"]["vmm"] == {"chunks_total": 9, "failed_fetches": 0},
              f"the well-formed fields are kept: {d['boot_complete_us']} {d['disks'][0]['lazy']}")
        check("its VMM: 0 of 9 chunks here" in strata(c, "vms", "describe", "lz").stdout, "the text shows the counts it has")
        server.shutdown()
        server.server_close()
        server = None
        lock.close()
    finally:
        if server:
            server.shutdown()
            server.server_close()
        if reg:
            reg.stop()


def case_concurrent_pull(work):
    """Two pulls of the same layer into one store at once: the first holds the
    layer's files under tmp/registry/ from the moment it makes them, so the
    second is refused with a clear message (or, once the first is done, finds
    its layer) and never removes or writes the first one's files. The first
    pull is held for 3 s right after it creates its layer file (strace delays
    that open), which is where the second one used to take the file over."""
    if shutil.which("strace") is None:
        print("SKIP: strace (scripts/install-deps) is not installed")
        sys.exit(125)
    reg = Registry(os.path.join(work, "reg"))
    try:
        a = setup(work, reg)
        c = os.path.join(work, "c")
        ref = f"{reg.host}/team/base:v1"
        strata(a, "images", "push", "base", ref, "--insecure")
        m = registry_manifest(reg, "team/base", "v1")
        check(len(m["layers"]) == 1, f"one layer blob: {m['layers']}")
        layer = m["layers"][0]
        # The pull's layer file is named by its blobs (stream_pull.cpp, resume_base).
        key = f"{layer['digest']}@0+{layer['annotations']['org.strata.layer.size']};"
        path = os.path.join(c, "tmp", "registry", hashlib.sha256(key.encode()).hexdigest() + ".layer")
        os.makedirs(os.path.dirname(path))
        e = dict(os.environ, STRATA_HOME=c, HOME=c)
        first = subprocess.Popen(["strace", "-f", "-o", "/dev/null", "-P", path, "-e", "trace=openat",
                                  "-e", "inject=openat:delay_exit=3000000", STRATA, "images", "pull", ref, "--insecure"],
                                 env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not os.path.exists(path) and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.01)
        check(os.path.exists(path), "the first pull did not create its layer file")
        second = strata(c, "images", "pull", ref, "--insecure", expect=None)
        out, err = first.communicate(timeout=300)
        check(first.returncode == 0, f"the first pull: exit {first.returncode}\n{err}\nthe second pull: exit {second.returncode}\n{second.stderr}")
        check(second.returncode == 0 or (second.returncode == 75 and "being pulled by another strata process" in second.stderr),
              f"the second pull: exit {second.returncode}\n{second.stderr}")
        print(f"the second pull, started while the first held its layer file: exit {second.returncode}")
        check(export_raw(a, "base", work + "/a.raw") == export_raw(c, "base", work + "/c.raw"), "the pulled image differs")
        left = os.listdir(os.path.join(c, "tmp", "registry"))
        check(left == [], f"a recorded pull leaves nothing under tmp/registry: {left}")
    finally:
        reg.stop()


def case_machine_images(work):
    """A VM written by the seqwriter guest, captured twice (differential), pushed,
    pulled into a second store, compared and booted (needs KVM)."""
    fw = os.path.join(BUILD, "firmware")
    reg = Registry(os.path.join(work, "reg"))
    try:
        a, b = os.path.join(work, "a"), os.path.join(work, "b")
        make_raw(os.path.join(work, "base.raw"), 8, 2)
        strata(a, "images", "import", "base", os.path.join(work, "base.raw"), "-f", "raw")
        strata(a, "disks", "create", "data", "--image", "base")
        strata(a, "vms", "create", "web", "--firmware", fw + "/seqwriter.elf", "--disk", "data,id=data")

        def write(start):
            strata(a, "run", "--firmware", fw + "/seqwriter.elf", "--disk", "data", "--cmdline", f"rounds=3 blocks=16 start={start}")

        write(0)
        strata(a, "machine-images", "create", "m1", "--source-vm", "web")
        write(1000)
        strata(a, "machine-images", "create", "m2", "--source-vm", "web")
        s = stats(strata(a, "machine-images", "push", "m1", f"{reg.host}/team/web:m1", "--insecure"))
        check(s["uploaded"] == 4, f"m1: base layer, written layer, firmware, config: {s}")
        before = reg.blobs()
        s = stats(strata(a, "machine-images", "push", "m2", f"{reg.host}/team/web:m2", "--insecure"))
        check(s["uploaded"] == 2 and s["skipped"] == 3, f"m2 sends only its new layer and config: {s}")
        check(len(reg.blobs() - before) == 3, f"m2 added new layer, config and manifest: {reg.blobs() - before}")
        # An image pull refuses a machine image and says what to use.
        r = strata(b, "images", "pull", f"{reg.host}/team/web:m2", "--insecure", expect=EX_DATAERR)
        check("machine-images pull" in r.stderr, r.stderr)
        s = stats(strata(b, "machine-images", "pull", f"{reg.host}/team/web:m1", "m1", "--insecure"))
        check(s["downloaded"] == 3, f"m1 pull: {s}")
        s = stats(strata(b, "machine-images", "pull", f"{reg.host}/team/web:m2", "m2", "--insecure"))
        check(s["downloaded"] == 1 and s["reused"] == 2, f"m2 pull on a host with m1 fetches only the new layer: {s}")
        sums = []
        for h in (a, b):
            strata(h, "vms", "create", "v2", "--source-machine-image", "m2")
            strata(h, "images", "create", "x", "--source-disk", "v2-disk-data")
            sums.append(export_raw(h, "x", os.path.join(work, os.path.basename(h) + ".raw")))
        check(sums[0] == sums[1], "the pulled machine image's disk differs")
        # The pulled VM's disk boots a guest that writes to it.
        strata(b, "run", "--firmware", fw + "/seqwriter.elf", "--disk", "v2-disk-data", "--cmdline", "rounds=2 blocks=16 start=5000")
        # vms create --source-machine-image REF --lazy: the VM is recorded at
        # once over incomplete layers; a guest reading its whole disk fetches
        # every chunk, after which the layers are local and hold m2's bytes.
        c = os.path.join(work, "c")
        r = strata(c, "vms", "create", "lz", "--source-machine-image", f"{reg.host}/team/web:m2", "--lazy", "--insecure")
        check(len(lazy_state(c)) == 6, f"three incomplete layers: {lazy_state(c)}")
        r = strata(c, "run", "--firmware", fw + "/blkread.elf", "--disk", "lz-disk-data", "--cmdline", "count=8 req_kb=1024",
                   env={"STRATA_LAZY_FILL": "0"})
        check("blkread: ok 8 requests" in r.stdout, r.stdout + r.stderr)
        check(len(lazy_state(c)) < 6, f"the guest's reads completed a layer: {lazy_state(c)}")
        strata(c, "machine-images", "fill", "lz-source")
        check(lazy_state(c) == [], f"machine-images fill completes the rest: {lazy_state(c)}")
        strata(c, "images", "create", "x", "--source-disk", "lz-disk-data")
        check(export_raw(c, "x", os.path.join(work, "c.raw")) == sums[0], "the lazily pulled VM's disk differs")
    finally:
        reg.stop()


BLKREAD_MAGIC = 0x424c4b5245414430


def make_pattern(path, mib):
    """Every 4 KiB block at byte offset o starts with o ^ BLKREAD_MAGIC and its
    complement (what firmware/programs/blkread.c checks), then a little noise."""
    import struct
    mask = (1 << 64) - 1
    rnd = random.Random(7)
    noise = rnd.randbytes(4096 * 16)
    with open(path, "wb") as f:
        for m in range(mib):
            parts = []
            for b in range(256):
                o = (m << 20) + (b << 12)
                v = o ^ BLKREAD_MAGIC
                k = (o >> 12) % 16
                parts.append(struct.pack("<QQ", v, ~v & mask) + noise[k * 4096 + 16:k * 4096 + 1024] + bytes(3072))
            f.write(b"".join(parts))


def lazy_state(home):
    d = os.path.join(home, "registry", "lazy")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def case_lazy(work):
    """images pull --lazy: a firmware guest reads scattered blocks of a lazily
    pulled 1 GiB disk and sees the right bytes, while the registry sees Range
    requests for the chunks it read only; a fill completes it; with the registry
    gone the guest gets I/O errors, never wrong data, and keeps running (KVM).

    Inside scripts/with-kvm's emulated machine the disk is 64 MiB: making,
    importing, pushing, exporting and hashing 1 GiB there (every instruction
    emulated) took most of the test's 900 s, and at 128 MiB the test still took
    521 s, the longest of the kvm tier (forced-emulated, load average about 12).
    What is checked does not depend on the size: the guest reads 1/32 of the
    disk's MiB-chunks scattered over all of it (2 there), then the whole disk, on
    a layer of the same chunk size, and every check is the same."""
    fw = os.path.join(BUILD, "firmware")
    mib = 64 if os.environ.get("STRATA_IN_KVM_BOX") == "1" else 1024
    scattered = mib // 32
    reg = Registry(os.path.join(work, "reg"))
    front = Front(reg)
    try:
        a = os.path.join(work, "a")
        raw = os.path.join(work, "pattern.raw")
        make_pattern(raw, mib)
        strata(a, "images", "import", "pat", raw, "-f", "raw")
        with open(raw, "rb") as f:
            want = hashlib.sha256(f.read()).hexdigest()
        ref = f"{front.host}/team/pat:v1"
        strata(a, "images", "push", "pat", ref, "--insecure")
        man = json.loads(urllib.request.urlopen(urllib.request.Request(
            f"http://{reg.host}/v2/team/pat/manifests/v1",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})).read())
        blob = man["layers"][0]
        check("org.strata.layer.index-digest" in blob["annotations"], f"the layer carries its index annotations: {blob}")

        # A lazy pull records the image at once, having fetched only the chunk index.
        b = os.path.join(work, "b")
        front.requests.clear()
        s = stats(strata(b, "images", "pull", ref, "pat", "--lazy", "--insecure"))
        check(s["downloaded"] == 0, f"a lazy pull downloads no blob: {s}")
        got = [r for r in front.requests if r[1].endswith(blob["digest"])]
        check(len(got) == 1 and got[0][2] is not None and got[0][3] < 1 << 20,
              f"a lazy pull fetched only the layer's chunk index with a Range request: {got}")
        check(len(lazy_state(b)) == 2, f"the layer is recorded as incomplete: {lazy_state(b)}")
        strata(b, "disks", "create", "d", "--image", "pat")
        # Pushing it elsewhere is refused while it is incomplete (its data is not here).
        r = strata(b, "images", "push", "pat", f"{reg.host}/other/pat:v1", "--insecure", expect=None)
        check(r.returncode != 0 and "lazily" in r.stderr, f"push of an incomplete layer to a registry lacking it: {r.stderr}")
        # So is anything that would read its data outside a VM (75, Busy).
        r = strata(b, "images", "export", "pat", os.path.join(work, "early.raw"), "-O", "raw", expect=75)
        check("lazily" in r.stderr and not os.path.exists(os.path.join(work, "early.raw")), r.stderr)
        r = strata(b, "disks", "flatten", "d", expect=75)
        check("lazily" in r.stderr, r.stderr)

        # The guest reads 1/32 of the disk, scattered, with the fill off: the
        # registry sees Range requests of single chunks (coalesced when
        # adjacent), nothing else.
        front.requests.clear()
        r = strata(b, "run", "--firmware", fw + "/blkread.elf", "--disk", "d", "--cmdline",
                   f"count={scattered} req_kb=1024 check=1", env={"STRATA_LAZY_FILL": "0"})
        check(f"blkread: ok {scattered} requests" in r.stdout and "errors 0" in r.stdout, f"lazy read: {r.stdout} {r.stderr}")
        gets = [x for x in front.requests if x[1].endswith(blob["digest"])]
        check(all(x[2] is not None for x in gets), f"every blob GET is a Range request: {gets}")
        fetched = sum(x[3] for x in gets)
        check(0 < len(gets) <= scattered, f"at most one Range request per MiB the guest read: {len(gets)}")
        check(fetched < blob["size"] // 8, f"{fetched} of {blob['size']} blob bytes fetched for {scattered} of {mib} MiB")
        print(f"lazy read of {scattered} of {mib} MiB: {len(gets)} Range requests, {fetched} of {blob['size']} blob bytes;",
              [l for l in r.stderr.splitlines() if "lazy disk" in l])
        check(len(lazy_state(b)) == 2, "still incomplete")

        # Reading the whole disk with the fill on completes the layer, which
        # then reads the same as the original without any description left.
        r = strata(b, "run", "--firmware", fw + "/blkread.elf", "--disk", "d", "--cmdline", f"count={mib} req_kb=1024 qd=8 check=1",
                   env={"STRATA_LAZY_FILL_DELAY_MS": "0"})
        check(f"blkread: ok {mib} requests" in r.stdout, f"whole-disk read: {r.stdout} {r.stderr}")
        print("whole-disk read:", r.stdout.strip().splitlines()[-1], [l for l in r.stderr.splitlines() if "lazy disk" in l])
        check(lazy_state(b) == [], f"the filled layer is local now: {lazy_state(b)}")
        check(export_raw(b, "pat", os.path.join(work, "b.raw")) == want, "the filled image differs from the pushed one")

        # A pull that is not lazy of an image whose layer an earlier lazy pull
        # left incomplete completes that layer.
        c = os.path.join(work, "c")
        strata(c, "images", "pull", ref, "pat", "--lazy", "--insecure")
        s = stats(strata(c, "images", "pull", ref, "pat2", "--insecure"))
        check(s["reused"] == 1, f"the full pull reuses the lazily pulled layer: {s}")
        check(lazy_state(c) == [], f"and fills it: {lazy_state(c)}")
        check(export_raw(c, "pat", os.path.join(work, "c.raw")) == want, "the filled image differs from the pushed one")

        # blkcheck's writes, partial and whole, write-zeroes and discards on a
        # lazily pulled disk (the chain completes partial blocks from the
        # chunks below, which must be fetched first).
        g = os.path.join(work, "g")
        strata(g, "images", "pull", ref, "pat", "--lazy", "--insecure")
        strata(g, "disks", "create", "d", "--image", "pat")
        r = strata(g, "run", "--firmware", fw + "/blkcheck.elf", "--disk", "d", env={"STRATA_LAZY_FILL": "0"})
        check("blkcheck: OK" in r.stdout, r.stdout + r.stderr)

        # The registry goes away: reads of missing chunks fail in the guest, which
        # keeps running and reads what is already here.
        e = os.path.join(work, "e")
        strata(e, "images", "pull", ref, "pat", "--lazy", "--insecure")
        strata(e, "disks", "create", "d", "--image", "pat")
        strata(e, "run", "--firmware", fw + "/blkread.elf", "--disk", "d", "--cmdline", "count=4 check=1",
               env={"STRATA_LAZY_FILL": "0"})
        front.stop()
        reg.stop()
        r = strata(e, "run", "--firmware", fw + "/blkread.elf", "--disk", "d", "--cmdline", "count=8 check=1",
                   env={"STRATA_LAZY_FILL": "0"}, expect=7)
        check("blkread: ok 4 requests" in r.stdout and "errors 4" in r.stdout and "wrong data" not in r.stdout,
              f"the 4 chunks fetched before read fine, the 4 others fail with EIO: {r.stdout} {r.stderr}")
        print("registry gone:", r.stdout.strip().splitlines()[-1], [l for l in r.stderr.splitlines() if "lazy disk" in l])
    finally:
        front.stop()
        reg.stop()


def unix_get(sock, target):
    """GET target from a VMM's API on a Unix socket, as JSON."""
    class Conn(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(sock)
    # A bound on a hang, not a timing: inside the emulated machine under load a
    # VMM took over 30 s to serve its API (seen once in CI's run of lazy_kill).
    deadline = time.monotonic() + 120
    while not os.path.exists(sock):
        check(time.monotonic() < deadline, "the API socket never appeared")
        time.sleep(0.05)
    c = Conn("localhost", timeout=10)
    c.request("GET", target)
    r = c.getresponse()
    body = r.read()
    c.close()
    check(r.status == 200, f"GET {target}: {r.status} {body}")
    return json.loads(body)


def present_chunks_hold_their_data(home):
    """Every chunk an incomplete layer's presence file marks present has, in the
    layer file, bytes whose SHA-256 is the chunk's; returns (present, total)."""
    d = os.path.join(home, "registry", "lazy")
    present = total = 0
    for n in os.listdir(d):
        if not n.endswith(".json"):
            continue
        lid = n[:-5]
        desc = json.load(open(os.path.join(d, n)))
        marks = open(os.path.join(d, lid + ".present"), "rb").read()
        with open(os.path.join(home, "layers", lid), "rb") as f:
            for i, (offset, length, at, stored, file_offset, digest, blob) in enumerate(desc["chunks"]):
                total += 1
                if marks[i] != 1:
                    continue
                present += 1
                f.seek(file_offset)
                check(hashlib.sha256(f.read(length)).hexdigest() == digest,
                      f"chunk {i} (layer offset {offset}) is marked present but its bytes in the layer file are wrong")
    return present, total


def case_lazy_kill(work):
    """A VMM killed (SIGKILL) while its lazy disk is being filled: every chunk
    it marked present holds its right bytes, the next start goes on from those
    chunks (fetching only the rest) and the disk then reads as the pushed image (KVM)."""
    fw = os.path.join(BUILD, "firmware")
    mib = 64
    reg = Registry(os.path.join(work, "reg"))
    front = Front(reg, slow=True)
    try:
        a = os.path.join(work, "a")
        raw = os.path.join(work, "pattern.raw")
        make_raw(raw, mib, 3)  # mostly random: a blob of ~2/3 its size, many fill requests
        strata(a, "images", "import", "pat", raw, "-f", "raw")
        with open(raw, "rb") as f:
            want = hashlib.sha256(f.read()).hexdigest()
        ref = f"{front.host}/team/pat:v1"
        front.slow = False
        strata(a, "images", "push", "pat", ref, "--insecure")
        b = os.path.join(work, "b")
        strata(b, "images", "pull", ref, "pat", "--lazy", "--insecure")
        strata(b, "disks", "create", "d", "--image", "pat")
        blob = sum(l["size"] for l in json.loads(urllib.request.urlopen(urllib.request.Request(
            f"http://{reg.host}/v2/team/pat/manifests/v1",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})).read())["layers"])
        # Downloads slowed to ~1.3 MB/s; the guest reads the whole disk while
        # the fill runs from the start. Killed once some chunks are present.
        front.slow = True
        e = dict(os.environ, STRATA_HOME=b, HOME=b, STRATA_LAZY_FILL_DELAY_MS="0")
        sock = os.path.join(work, "api.sock")
        p = subprocess.Popen([STRATA, "run", "--firmware", fw + "/blkread.elf", "--disk", "d", "--cmdline",
                              f"count={mib} req_kb=1024 qd=4", "--api-socket", sock], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        marks = lambda: sum(open(os.path.join(b, "registry", "lazy", n), "rb").read().count(1)
                            for n in os.listdir(os.path.join(b, "registry", "lazy")) if n.endswith(".present"))
        deadline = time.monotonic() + 120
        while marks() == 0 and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.05)
        # GET /metrics shows the lazy disk's state while it runs.
        metrics = unix_get(sock, "/metrics")
        p.kill()
        out, err = p.communicate()
        check(p.returncode == -signal.SIGKILL, f"the VMM was killed mid-fill: {p.returncode} {out[-300:]} {err[-300:]}")
        present, total = present_chunks_hold_their_data(b)
        check(0 < present < total, f"killed with {present} of {total} chunks present")
        print(f"killed with {present} of {total} chunks present, each holding its bytes")
        lazy = metrics["disks"][0].get("lazy")
        check(lazy and lazy["chunks_total"] == total and 0 < lazy["chunks_present"] <= total
              and lazy["demand_bytes"] + lazy["fill_bytes"] > 0, f"GET /metrics of a lazy disk: {metrics}")
        print("metrics while filling:", lazy)
        # disks describe shows what is here from the store's files alone.
        details = json.loads(strata(b, "disks", "describe", "d", "--json").stdout)["layer_details"]
        shown = [l["lazy"] for l in details if "lazy" in l]
        check(len(shown) == 1 and shown[0]["chunks_present"] == present and shown[0]["chunks_total"] == total
              and 0 < shown[0]["blob_bytes_present"] < shown[0]["blob_bytes_total"], f"disks describe: {details}")
        # The next start: the guest reads everything right, and the fill fetches
        # only what was not present.
        front.slow = False
        # The killed `strata run`'s VMM process goes a moment after it: until
        # then it holds the disk's layers (75, in use).
        deadline = time.monotonic() + 30
        while True:
            r = strata(b, "run", "--firmware", fw + "/blkread.elf", "--disk", "d", "--cmdline", f"count={mib} req_kb=1024 qd=4",
                       env={"STRATA_LAZY_FILL_DELAY_MS": "0"}, expect=None)
            if r.returncode != 75 or "in use" not in r.stderr or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        check(r.returncode == 0, f"the next start: exit {r.returncode}: {r.stderr}")
        check(f"blkread: ok {mib} requests" in r.stdout and "errors 0" in r.stdout, f"read after the kill: {r.stdout} {r.stderr}")
        line = [l for l in r.stderr.splitlines() if "lazy disk" in l][0]
        n = [int(x) for x in re.findall(r"(\d+) bytes", line)]
        check(sum(n) < blob, f"the second start fetched {sum(n)} of the blob's {blob} bytes: {line}")
        print("after the kill:", line)
        check(lazy_state(b) == [], f"the fill completed the layer: {lazy_state(b)}")
        details = json.loads(strata(b, "disks", "describe", "d", "--json").stdout)["layer_details"]
        check(all("lazy" not in l for l in details), f"a complete layer shows no lazy state: {details}")
        check(export_raw(b, "pat", os.path.join(work, "b.raw")) == want, "the filled image differs from the pushed one")
    finally:
        front.stop()
        reg.stop()


def case_tls(work):
    """A registry serving HTTPS with a certificate this test makes (openssl):
    refused without the CA, accepted with --ca-cert or --tls-verify=false; a
    lazy pull's fetches use the same CA file."""
    if shutil.which("openssl") is None:
        print("SKIP: no openssl")
        sys.exit(125)
    cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    reg = Registry(os.path.join(work, "reg"), tls=(cert, key))
    try:
        a = setup(work, reg)
        ref = f"{reg.host}/team/base:v1"
        # Not trusted by the system's CAs: 69 with a TLS message, nothing sent.
        r = strata(a, "images", "push", "base", ref, expect=69)
        check("TLS" in r.stderr, r.stderr)
        check(reg.blobs() == set(), "nothing was pushed over an unverified connection")
        strata(a, "images", "push", "base", ref, "--ca-cert", cert)
        b = os.path.join(work, "b")
        r = strata(b, "images", "pull", ref, expect=69)
        check("TLS" in r.stderr, r.stderr)
        store_is_clean(b, "untrusted certificate")
        strata(b, "images", "pull", ref, "--ca-cert", cert)
        want = export_raw(a, "base", os.path.join(work, "a.raw"))
        check(export_raw(b, "base", os.path.join(work, "b.raw")) == want, "pulled over TLS differs")
        strata(b, "images", "pull", ref, "nover", "--tls-verify=false")
        # A CA file that does not sign the registry's certificate is refused too.
        other_cert, other_key = os.path.join(work, "other.pem"), os.path.join(work, "other-key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", other_key, "-out", other_cert,
                        "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], check=True,
                       capture_output=True)
        r = strata(b, "images", "pull", ref, "other", "--ca-cert", other_cert, expect=69)
        # A lazy pull over HTTPS: its fill uses the CA file the pull was given.
        c = os.path.join(work, "c")
        strata(c, "images", "pull", ref, "--lazy", "--ca-cert", cert)
        strata(c, "images", "fill", "base")
        check(lazy_state(c) == [], "filled over HTTPS")
        check(export_raw(c, "base", os.path.join(work, "c.raw")) == want, "lazily pulled over TLS differs")
    finally:
        reg.stop()


def case_parts(work):
    """--part-mib splits a layer into part blobs: pulls (whole and lazy) put it
    together, and a push of another layer that shares parts sends only the
    parts that differ."""
    reg = Registry(os.path.join(work, "reg"))
    try:
        a = os.path.join(work, "a")
        raw = os.path.join(work, "base.raw")
        make_raw(raw, 6, 1)
        strata(a, "images", "import", "base", raw, "-f", "raw")
        ref = f"{reg.host}/team/base:v1"
        s = stats(strata(a, "images", "push", "base", ref, "--insecure", "--part-mib", "2"))
        check(s["uploaded"] == 4, f"three parts of 2 MiB and the config: {s}")
        man = json.loads(urllib.request.urlopen(urllib.request.Request(
            f"http://{reg.host}/v2/team/base/manifests/v1", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})).read())
        offsets = [l["annotations"].get("org.strata.layer.part-offset") for l in man["layers"]]
        check(offsets == ["0", str(2 << 20), str(4 << 20)], f"the parts' offsets: {offsets}")
        want = export_raw(a, "base", os.path.join(work, "a.raw"))
        b = os.path.join(work, "b")
        s = stats(strata(b, "images", "pull", ref, "--insecure"))
        check(s["downloaded"] == 3, f"a pull fetches the three parts: {s}")
        check(export_raw(b, "base", os.path.join(work, "b.raw")) == want, "the image put together from parts differs")
        c = os.path.join(work, "c")
        strata(c, "images", "pull", ref, "--insecure", "--lazy")
        strata(c, "images", "fill", "base")
        check(export_raw(c, "base", os.path.join(work, "c.raw")) == want, "the lazily pulled parts differ")
        # Another image (its own layer) equal to base but for its last 2 MiB:
        # only that part is sent.
        with open(raw, "r+b") as f:
            f.seek(4 << 20)
            f.write(random.Random(9).randbytes(2 << 20))
        strata(a, "images", "import", "next", raw, "-f", "raw")
        s = stats(strata(a, "images", "push", "next", f"{reg.host}/team/next:v1", "--insecure", "--part-mib", "2"))
        check(s["uploaded"] == 2 and s["skipped"] == 2 and s["mounted"] == 2,
              f"only the changed part and the config are sent, the equal parts mounted from team/base: {s}")
        s = stats(strata(b, "images", "pull", f"{reg.host}/team/next:v1", "--insecure"))
        check(export_raw(b, "next", os.path.join(work, "n.raw")) == export_raw(a, "next", os.path.join(work, "an.raw")),
              "the second image differs")
        # Pushed again with another part size, the layer is rebuilt as one blob.
        s = stats(strata(a, "images", "push", "base", f"{reg.host}/team/whole:v1", "--insecure"))
        check(s["uploaded"] == 1 + 1, f"one whole blob and the config: {s}")
    finally:
        reg.stop()


def case_content_annotation(work):
    """A pull checks the content digest a manifest claims for a layer against the
    layer it built: one that differs (an older strata's digest of its file's
    layout, or a false claim) is said on stderr, and the store records the layer
    by what it holds, so the claim never finds it for another image; a repeated
    pull of the same blobs still finds it."""
    reg = Registry(os.path.join(work, "reg"))
    try:
        a = setup(work, reg)
        b = os.path.join(work, "b")
        ref = f"{reg.host}/team/base:v1"
        strata(a, "images", "push", "base", ref, "--insecure")
        c = http.client.HTTPConnection("127.0.0.1", reg.port, timeout=10)
        accept = "application/vnd.oci.image.manifest.v1+json"
        c.request("GET", "/v2/team/base/manifests/v1", headers={"Accept": accept})
        m = json.loads(c.getresponse().read())
        true_digest = m["layers"][0]["annotations"]["org.strata.layer.content-digest"]
        claim = "sha256:" + "ab" * 32
        m["layers"][0]["annotations"]["org.strata.layer.content-digest"] = claim
        c.request("PUT", "/v2/team/base/manifests/claim", body=json.dumps(m).encode(), headers={"Content-Type": accept})
        r = c.getresponse()
        r.read()
        check(r.status == 201, f"PUT the altered manifest: {r.status}")
        r = strata(b, "images", "pull", f"{reg.host}/team/base:claim", "claimed", "--insecure")
        check(f"its content digest annotation {claim} is not the content's {true_digest}" in r.stderr, r.stderr)
        recs = [json.load(open(os.path.join(b, "registry", "layers", n))) for n in os.listdir(os.path.join(b, "registry", "layers"))]
        check([x["content"] for x in recs] == [true_digest], f"the record names the layer by its content: {recs}")
        # The same blobs again: found by them, nothing downloaded.
        s = stats(strata(b, "images", "pull", f"{reg.host}/team/base:claim", "again", "--insecure"))
        check(s["downloaded"] == 0 and s["reused"] == 1, f"a repeated pull of the same blobs: {s}")
        # The true digest finds it too.
        s = stats(strata(b, "images", "pull", ref, "true", "--insecure"))
        check(s["downloaded"] == 0 and s["reused"] == 1, f"a pull naming the true digest: {s}")
        check(export_raw(a, "base", work + "/a.raw") == export_raw(b, "claimed", work + "/b.raw"), "the pulled image differs")
    finally:
        reg.stop()


def lazy_vm(work):
    """A registry holding machine image m1 (a VM on an imported image, with the
    echo firmware, which waits for console input until stopped), and a store c
    where VM lz was created from it with --lazy. Returns (registry, c)."""
    fw = os.path.join(BUILD, "firmware")
    reg = Registry(os.path.join(work, "reg"))
    a, c = os.path.join(work, "a"), os.path.join(work, "c")
    make_raw(os.path.join(work, "base.raw"), 6, 3)
    strata(a, "images", "import", "base", os.path.join(work, "base.raw"), "-f", "raw")
    strata(a, "disks", "create", "data", "--image", "base")
    strata(a, "vms", "create", "web", "--firmware", fw + "/echo.elf", "--disk", "data,id=data")
    strata(a, "machine-images", "create", "m1", "--source-vm", "web")
    ref = f"{reg.host}/team/web:m1"
    strata(a, "machine-images", "push", "m1", ref, "--insecure")
    strata(c, "vms", "create", "lz", "--source-machine-image", ref, "--lazy", "--insecure")
    return reg, c


def case_vms_describe_lazy(work):
    """vms describe (and --json) shows a lazily created VM's remote layers, where
    they come from and how much of them is here; nothing once they are filled."""
    reg, c = None, None
    try:
        reg, c = lazy_vm(work)
        d = json.loads(strata(c, "vms", "describe", "lz", "--json").stdout)
        lazy = d["disks"][0].get("lazy")
        check(lazy and lazy["remote_layers"] >= 1 and lazy["from"] == [f"{reg.host}/team/web"]
              and lazy["chunks_total"] > 0 and lazy["chunks_present"] == 0 and lazy["blob_bytes_fetched"] == 0
              and lazy["blob_bytes_total"] > 0 and lazy["fill_percent"] == 0, f"vms describe --json of a lazy VM: {d['disks']}")
        text = strata(c, "vms", "describe", "lz").stdout
        check(f"pulled lazily from {reg.host}/team/web" in text and "0.0% here" in text, text)
        strata(c, "machine-images", "fill", "lz-source")
        d = json.loads(strata(c, "vms", "describe", "lz", "--json").stdout)
        check(d["disks"][0].get("lazy", "absent") is None, f"a filled VM shows no lazy state: {d['disks']}")
        check("pulled lazily" not in strata(c, "vms", "describe", "lz").stdout, "a filled VM's text shows lazy state")
    finally:
        if reg:
            reg.stop()


def case_vms_describe_lazy_running(work):
    """While a lazily created VM runs (no background fill), vms describe also
    carries its VMM's own lazy counters (needs KVM)."""
    reg, c = None, None
    try:
        reg, c = lazy_vm(work)
        total = json.loads(strata(c, "vms", "describe", "lz", "--json").stdout)["disks"][0]["lazy"]["chunks_total"]
        strata(c, "vms", "start", "lz", "--no-jail", env={"STRATA_LAZY_FILL": "0"})
        try:
            deadline = time.monotonic() + 60
            while True:
                d = json.loads(strata(c, "vms", "describe", "lz", "--json").stdout)
                vmm = (d["disks"][0].get("lazy") or {}).get("vmm")
                if vmm or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            check(d["state"] == "running" and vmm and vmm["chunks_total"] == total and vmm["failed_fetches"] == 0,
                  f"vms describe --json of a running lazy VM: {d}")
            check("its VMM:" in strata(c, "vms", "describe", "lz").stdout, "the text shows the VMM's view")
        finally:
            strata(c, "vms", "stop", "lz", expect=None)
    finally:
        if reg:
            reg.stop()


def case_running_state(work):
    """A running-state machine image pushed and pulled: the registry carries its
    disks only, so push says so and the pulled image is a stopped one whose VMs
    boot (before, the pulled record claimed a saved machine it did not hold and
    every VM from it failed). Needs KVM."""
    fw = os.path.join(BUILD, "firmware")
    reg = Registry(os.path.join(work, "reg"))
    a, b = os.path.join(work, "a"), os.path.join(work, "b")
    try:
        make_raw(os.path.join(work, "base.raw"), 8, 3)
        strata(a, "images", "import", "base", os.path.join(work, "base.raw"), "-f", "raw")
        strata(a, "vms", "create", "live", "--firmware", fw + "/seqwriter.elf", "--image", "base",
               "--cmdline", "rounds=1000000 blocks=16")
        strata(a, "vms", "start", "live", "--no-jail")
        try:
            strata(a, "machine-images", "create", "m3", "--source-vm", "live", "--with-memory")
        finally:
            strata(a, "vms", "stop", "live", expect=None)
        check(json.loads(strata(a, "machine-images", "describe", "m3", "--json").stdout).get("state") == "running",
              "the source image is a running-state one")
        r = strata(a, "machine-images", "push", "m3", f"{reg.host}/team/live:m3", "--insecure")
        check("registry carries its disks only" in r.stderr, "push says what it left out: " + r.stderr)
        strata(b, "machine-images", "pull", f"{reg.host}/team/live:m3", "m3", "--insecure")
        check(json.loads(strata(b, "machine-images", "describe", "m3", "--json").stdout).get("state") != "running",
              "the pulled image claims no saved machine")
        strata(b, "vms", "create", "v3", "--source-machine-image", "m3", "--cmdline", "rounds=2 blocks=16 start=7000")
        strata(b, "vms", "start", "v3", "--no-jail")
        strata(b, "vms", "stop", "v3", expect=None)
    finally:
        reg.stop()


CASES = {"running_state": case_running_state, "resume_frozen_tampered": case_resume_frozen_tampered, "vms_describe_bad_metrics": case_vms_describe_bad_metrics, "parts": case_parts, "concurrent_pull": case_concurrent_pull, "resume_marks_ahead": case_resume_marks_ahead, "resume_frozen": case_resume_frozen, "vms_describe_lazy": case_vms_describe_lazy, "vms_describe_lazy_running": case_vms_describe_lazy_running, "content_annotation": case_content_annotation, "tls": case_tls, "lazy": case_lazy, "lazy_kill": case_lazy_kill, "push_pull": case_push_pull, "skopeo": case_skopeo, "bad_input": case_bad_input, "auth_basic": case_auth_basic,
         "bearer": case_bearer, "dropped_connection": case_dropped_connection, "redirect": case_redirect,
         "sigkill": case_sigkill, "machine_images": case_machine_images}

if __name__ == "__main__":
    if shutil.which("docker-registry") is None:
        print("SKIP: docker-registry is not installed (scripts/install-deps)")
        sys.exit(125)
    work = tempfile.mkdtemp(prefix="strata-registry-")
    try:
        CASES[CASE](work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("PASS", CASE)
