#!/usr/bin/env python3
"""Writes a one-layer OCI image archive (an OCI image layout in a tar) from files on this host,
for `ctr images import`: the real-runtime tests' sandbox and container images, with no registry.

  oci_image.py --name registry.k8s.io/pause:3.10 --out pause.tar --file /path/pause:/pause \
      --entrypoint /pause
"""
import argparse
import hashlib
import io
import json
import os
import tarfile
import time


def blob(data):
    return "sha256:" + hashlib.sha256(data).hexdigest(), data


def layer_tar(files, dirs, symlinks):
    """An uncompressed layer: `files` are (host path, image path, mode), `dirs` image paths,
    `symlinks` (image path, target). Owned by root, with a fixed mtime so the digest only
    changes when the content does."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        def add_dir(path):
            info = tarfile.TarInfo(path.strip("/"))
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            t.addfile(info)
        seen = set()
        def parents(path):
            parts = path.strip("/").split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in seen:
                    seen.add(d)
                    add_dir(d)
        for d in dirs:
            parents(d + "/x")
        for host, path, mode in files:
            parents(path)
            with open(host, "rb") as f:
                data = f.read()
            info = tarfile.TarInfo(path.strip("/"))
            info.size, info.mode, info.mtime = len(data), mode, 0
            t.addfile(info, io.BytesIO(data))
        for path, target in symlinks:
            parents(path)
            info = tarfile.TarInfo(path.strip("/"))
            info.type, info.linkname, info.mode, info.mtime = tarfile.SYMTYPE, target, 0o777, 0
            t.addfile(info)
    return buf.getvalue()


def write_image(name, out, files, dirs=(), symlinks=(), entrypoint=None, cmd=None):
    layer_digest, layer = blob(layer_tar(files, dirs, symlinks))
    config = {
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": entrypoint, "Cmd": cmd,
                   "Env": ["PATH=/bin:/sbin:/usr/bin:/usr/sbin"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }
    config_digest, config_data = blob(json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": len(config_data)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": len(layer)}],
    }
    manifest_digest, manifest_data = blob(json.dumps(manifest, sort_keys=True).encode())
    index = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": manifest_digest, "size": len(manifest_data),
                       "platform": {"architecture": "amd64", "os": "linux"},
                       "annotations": {"io.containerd.image.name": name,
                                       "org.opencontainers.image.ref.name": name}}],
    }
    tmp = out + ".tmp"
    with tarfile.open(tmp, "w") as t:
        def put(path, data):
            info = tarfile.TarInfo(path)
            info.size, info.mtime = len(data), int(time.time())
            t.addfile(info, io.BytesIO(data))
        put("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        put("index.json", json.dumps(index).encode())
        for digest, data in ((layer_digest, layer), (config_digest, config_data),
                             (manifest_digest, manifest_data)):
            put("blobs/sha256/" + digest.split(":", 1)[1], data)
    os.replace(tmp, out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--file", action="append", default=[], help="HOST:IMAGEPATH")
    ap.add_argument("--dir", action="append", default=[], help="IMAGEPATH")
    ap.add_argument("--symlink", action="append", default=[], help="IMAGEPATH:TARGET")
    ap.add_argument("--entrypoint", nargs="*")
    ap.add_argument("--cmd", nargs="*")
    a = ap.parse_args()
    files = [(h, p, 0o755) for h, p in (f.split(":", 1) for f in a.file)]
    links = [tuple(s.split(":", 1)) for s in a.symlink]
    write_image(a.name, a.out, files, a.dir, links, a.entrypoint, a.cmd)


if __name__ == "__main__":
    main()
