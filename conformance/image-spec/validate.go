// Command validate checks an OCI image layout directory with the image-spec's
// own validators (github.com/opencontainers/image-spec/schema, from Debian's
// golang-github-opencontainers-image-spec-dev): oci-layout, index.json, every
// manifest and config against its JSON schema and the spec's extra checks,
// and every blob against the digest and size its descriptor gives, layers
// uncompressed against the config's rootfs.diff_ids.
//
// Usage: validate DIR
//
// Prints one line per check ("ok ..." or "FAIL ...") and exits 1 if any failed.
package main

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/opencontainers/image-spec/schema"
)

var failed bool

func report(what string, err error) {
	if err != nil {
		failed = true
		fmt.Printf("FAIL %s: %v\n", what, err)
		return
	}
	fmt.Printf("ok %s\n", what)
}

type descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

// blob reads the blob a descriptor names and checks its digest and size.
func blob(dir string, d descriptor) ([]byte, error) {
	algo, hexd, ok := strings.Cut(d.Digest, ":")
	if !ok || algo != "sha256" {
		return nil, fmt.Errorf("digest %q: not sha256:HEX", d.Digest)
	}
	b, err := os.ReadFile(filepath.Join(dir, "blobs", algo, hexd))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	if hex.EncodeToString(sum[:]) != hexd {
		return nil, fmt.Errorf("blob %s: content hashes to sha256:%x", d.Digest, sum)
	}
	if int64(len(b)) != d.Size {
		return nil, fmt.Errorf("blob %s: %d bytes, descriptor says %d", d.Digest, len(b), d.Size)
	}
	return b, nil
}

// uncompressed returns the sha256 of a layer's tar stream.
func uncompressed(mediaType string, b []byte) (string, error) {
	var r io.Reader
	switch {
	case strings.HasSuffix(mediaType, "+gzip") || strings.HasSuffix(mediaType, ".gzip"):
		g, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return "", err
		}
		r = g
	case strings.HasSuffix(mediaType, "+zstd") || strings.HasSuffix(mediaType, ".zstd"):
		cmd := exec.Command("zstd", "-dc")
		cmd.Stdin = bytes.NewReader(b)
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("zstd -dc: %v", err)
		}
		r = bytes.NewReader(out)
	case strings.HasSuffix(mediaType, ".tar"):
		r = bytes.NewReader(b)
	case mediaType == "application/vnd.in-toto+json":
		// An attestation manifest's layers (BuildKit's layout): uncompressed statements,
		// listed in its config's diff_ids as they are.
		r = bytes.NewReader(b)
	default:
		return "", fmt.Errorf("media type %q is not a layer type", mediaType)
	}
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

func manifest(dir, name string, d descriptor) {
	b, err := blob(dir, d)
	report(name+" blob", err)
	if err != nil {
		return
	}
	report(name+" schema", schema.ValidatorMediaTypeManifest.Validate(bytes.NewReader(b)))
	var m struct {
		Config descriptor   `json:"config"`
		Layers []descriptor `json:"layers"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		report(name+" parse", err)
		return
	}
	cb, err := blob(dir, m.Config)
	report(name+" config blob", err)
	if err != nil {
		return
	}
	report(name+" config schema", schema.ValidatorMediaTypeImageConfig.Validate(bytes.NewReader(cb)))
	var c struct {
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(cb, &c); err != nil {
		report(name+" config parse", err)
		return
	}
	if len(c.RootFS.DiffIDs) != len(m.Layers) {
		report(name+" layers", fmt.Errorf("%d layers, %d diff_ids", len(m.Layers), len(c.RootFS.DiffIDs)))
		return
	}
	for i, l := range m.Layers {
		what := fmt.Sprintf("%s layer %d", name, i)
		lb, err := blob(dir, l)
		if err == nil {
			var id string
			id, err = uncompressed(l.MediaType, lb)
			if err == nil && id != c.RootFS.DiffIDs[i] {
				err = fmt.Errorf("uncompressed %s, config diff_id %s", id, c.RootFS.DiffIDs[i])
			}
		}
		report(what, err)
	}
}

func index(dir, name string, b []byte) {
	report(name+" schema", schema.ValidatorMediaTypeImageIndex.Validate(bytes.NewReader(b)))
	var idx struct {
		Manifests []descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		report(name+" parse", err)
		return
	}
	for i, d := range idx.Manifests {
		what := fmt.Sprintf("%s manifests[%d]", name, i)
		switch d.MediaType {
		case "application/vnd.oci.image.manifest.v1+json":
			manifest(dir, what, d)
		case "application/vnd.oci.image.index.v1+json":
			nb, err := blob(dir, d)
			report(what+" blob", err)
			if err == nil {
				index(dir, what, nb)
			}
		default:
			report(what, fmt.Errorf("media type %q", d.MediaType))
		}
	}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: validate OCI-LAYOUT-DIR")
		os.Exit(2)
	}
	dir := os.Args[1]
	l, err := os.ReadFile(filepath.Join(dir, "oci-layout"))
	if err == nil {
		err = schema.ValidatorMediaTypeLayoutHeader.Validate(bytes.NewReader(l))
	}
	report("oci-layout", err)
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		report("index.json", err)
	} else {
		index(dir, "index.json", b)
	}
	if failed {
		os.Exit(1)
	}
}
