package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/node"
)

// testPKI writes a CA and a node certificate (server and client use, for
// 127.0.0.1) and returns their paths and the CA pool.
func testPKI(t *testing.T) (caFile, certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hfcache test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "hfcache node"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	return write("ca.pem", "CERTIFICATE", caDER), write("node.pem", "CERTIFICATE", der), write("node.key", "EC PRIVATE KEY", keyDER), pool
}

// TestTLSAndPeerMTLS: two nodes serve clients and admins over TLS and talk
// to each other with mutual TLS; a peer request signed with the cluster
// secret but without a node certificate is refused.
func TestTLSAndPeerMTLS(t *testing.T) {
	hub := startHub(t)
	ca, cert, key, pool := testPKI(t)
	tlsArgs := []string{"--tls-cert", cert, "--tls-key", key, "--peer-tls-ca", ca, "--peer-tls-cert", cert, "--peer-tls-key", key, "--cluster-secret", clusterSecret}
	n1 := startProc(t, hub.URL(), t.TempDir(), append([]string{"--node-name", "node1"}, tlsArgs...)...)
	n2 := startProc(t, hub.URL(), t.TempDir(), append([]string{"--node-name", "node2", "--join", n1.Gossip}, tlsArgs...)...)
	for _, p := range []*proc{n1, n2} {
		p.URL = strings.Replace(p.URL, "http://", "https://", 1)
		p.AdminURL = strings.Replace(p.AdminURL, "http://", "https://", 1)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	get := func(url string, hdr http.Header) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		for k, v := range hdr {
			req.Header[k] = v
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	eventually(t, 30*time.Second, "two members over TLS", func() bool {
		resp, b := get(n1.AdminURL+"/v1/cluster/members", nil)
		return resp.StatusCode == 200 && strings.Count(string(b), `"alive"`) == 2 && strings.Contains(string(b), "https://")
	})
	// Every file, through both nodes: some are proxied between them over mutual TLS.
	proxied := 0
	for _, p := range []string{"config.json", "model.safetensors", "xet.bin", "weights+v2.bin", "nested/deeper/notes.md"} {
		want := content(t, hub, hf.Model, modelID, "main", p)
		for _, n := range []*proc{n1, n2} {
			resp, body := get(resolveURL(n.URL, hf.Model, modelID, "main", p), nil)
			if resp.StatusCode != 200 || !bytes.Equal(body, want) {
				t.Fatalf("%s via %s: %d", p, n.URL, resp.StatusCode)
			}
			if resp.Header.Get("X-Hfcache-Via") != "" {
				proxied++
			}
		}
	}
	if proxied == 0 {
		t.Fatal("no request was proxied between the nodes: mutual TLS was not exercised")
	}
	for _, p := range []*proc{n1, n2} {
		if strings.Contains(p.Log.String(), "owner unreachable") || strings.Contains(p.Log.String(), "blob owner unreachable") {
			t.Fatal("a node could not reach its peer over TLS")
		}
	}
	// A signed peer request without a node certificate is refused.
	fi := hub.FileInfo(hf.Model, modelID, "main", "config.json")
	u := n1.URL + node.PeerBlobPath + "?id=gitsha1:" + fi.GitSHA1 + "&type=model&repo=" + modelID + "&commit=" + fi.Commit + "&path=config.json&size=41"
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	node.NewPeerAuth(clusterSecret, time.Now).Sign(req)
	resp, body := get(u, req.Header)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "certificate") {
		t.Fatalf("peer route without a node certificate: %d %s", resp.StatusCode, body)
	}
	// Plain HTTP is not served on a TLS port.
	if r, err := http.Get(strings.Replace(n1.URL, "https://", "http://", 1) + "/-/health"); err == nil {
		if r.StatusCode == 200 {
			t.Fatal("a TLS port answered plain HTTP")
		}
		r.Body.Close()
	}
}
