package e2e

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
)

// TestEntitlementMatrix: a gated and a private repository, cached by an
// approved caller, are then refused to a request with no token, a wrong
// token, a valid but unapproved token, and — within the auth TTL — a
// revoked token, although the bytes are on disk. No token appears in the
// node's logs.
func TestEntitlementMatrix(t *testing.T) {
	hub := startHub(t)
	const revoked = "hf_token_to_be_revoked"
	hub.AddToken(revoked, "bob")
	hub.Grant(revoked, hf.Model, gatedID)
	hub.Grant(revoked, hf.Model, privateID)
	p := startProc(t, hub.URL(), t.TempDir(), "--auth-ttl", "1s", "--admin-token", "hf_admin_secret_token", "--upstream-token", "hf_remote_secret_token")

	for _, c := range []struct {
		id                   string
		noToken, unapproved  int
		noTokenCode, badCode string
	}{
		{gatedID, 401, 403, hf.CodeGatedRepo, hf.CodeGatedRepo},
		{privateID, 401, 404, hf.CodeRepoNotFound, hf.CodeRepoNotFound},
	} {
		u := resolveURL(p.URL, hf.Model, c.id, "main", "config.json")
		want := content(t, hub, hf.Model, c.id, "main", "config.json")
		get := func(token string) (*http.Response, []byte) {
			hdr := map[string]string{}
			if token != "" {
				hdr["Authorization"] = "Bearer " + token
			}
			return do(t, http.MethodGet, u, hdr)
		}
		for _, tok := range []string{goodToken, revoked} {
			if resp, body := get(tok); resp.StatusCode != 200 || !bytes.Equal(body, want) {
				t.Fatalf("%s approved: %d", c.id, resp.StatusCode)
			}
		}
		for _, m := range []struct {
			name, token, code string
			status            int
		}{
			{"no token", "", c.noTokenCode, c.noToken},
			{"wrong token", "hf_not_a_token", "", 401},
			{"unapproved token", otherToken, c.badCode, c.unapproved},
		} {
			resp, body := get(m.token)
			if resp.StatusCode != m.status || resp.Header.Get(hf.HeaderErrorCode) != m.code || bytes.Contains(body, want) {
				t.Errorf("%s, %s: %d %q, want %d %q", c.id, m.name, resp.StatusCode, resp.Header.Get(hf.HeaderErrorCode), m.status, m.code)
			}
		}
		// Revoked at the Hub: refused once the auth TTL has passed.
		hub.Revoke(revoked, hf.Model, c.id)
		eventually(t, 10*time.Second, c.id+": the revoked token refused", func() bool {
			resp, _ := get(revoked)
			return resp.StatusCode == c.unapproved
		})
		// The approved caller still gets the cached bytes.
		if resp, body := get(goodToken); resp.StatusCode != 200 || !bytes.Equal(body, want) {
			t.Fatalf("%s approved after the revocation: %d", c.id, resp.StatusCode)
		}
	}
	p.stop(t)
	logs := p.Log.String()
	// What was searched includes the request log line of every request
	// above (2 × 7 at least), each at info with its status.
	if n := strings.Count(logs, `"msg":"request"`); n < 14 || !strings.Contains(logs, `"route":"resolve","distribution":"default","repo_type":"model","repo":"`+gatedID+`","revision":"main","path":"config.json","status":401`) {
		t.Errorf("%d request log lines, or none for the gated repository's 401", n)
	}
	for _, secret := range []string{goodToken, otherToken, revoked, "hf_not_a_token", "hf_admin_secret_token", "hf_remote_secret_token", clusterSecret} {
		if strings.Contains(logs, secret) {
			t.Errorf("a secret (%.6s…) appears in the logs", secret)
		}
	}
}

// TestSlowloris: a client that dribbles its request headers is cut off
// after --read-header-timeout, on the client and the admin port.
func TestSlowloris(t *testing.T) {
	hub := startHub(t)
	p := startProc(t, hub.URL(), t.TempDir(), "--read-header-timeout", "1s")
	for _, base := range []string{p.URL, p.AdminURL} {
		conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET /-/health HTTP/1.1\r\nHost: x\r\n")
		// Keep dribbling a header line byte by byte; the server must give up.
		closed := make(chan struct{})
		go func() {
			buf := make([]byte, 512)
			conn.SetReadDeadline(time.Now().Add(20 * time.Second))
			for {
				if _, err := conn.Read(buf); err != nil {
					close(closed)
					return
				}
			}
		}()
		deadline := time.After(15 * time.Second)
	dribble:
		for {
			select {
			case <-closed:
				break dribble
			case <-deadline:
				t.Fatalf("%s: a slow client kept the connection for 15s", base)
			case <-time.After(100 * time.Millisecond): // the attacker's pace
				conn.Write([]byte("X"))
			}
		}
		conn.Close()
	}
}

// TestWarnsWithoutClusterSecret: a node reachable on a non-loopback address
// without --cluster-secret says loudly that it is unprotected.
func TestWarnsWithoutClusterSecret(t *testing.T) {
	hub := startHub(t)
	p := startProc(t, hub.URL(), t.TempDir(), "--advertise-addr", "10.255.255.1")
	if !strings.Contains(p.Log.String(), "no --cluster-secret") {
		t.Fatal("no warning about the missing cluster secret")
	}
	q := startProc(t, hub.URL(), t.TempDir())
	if strings.Contains(q.Log.String(), "no --cluster-secret") {
		t.Fatal("a loopback-only node warned")
	}
}
