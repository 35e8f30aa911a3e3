package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hfcache/hfcache/hubclient/hf"
	"github.com/hfcache/hfcache/node"
	"github.com/spf13/cobra"
)

// `hfcache warm REPO[@REV]` starts a prefetch job on the node at --addr
// (POST /v1/jobs), follows it (GET /v1/jobs/{id}) with a progress bar, and
// prints a summary. Ctrl-C cancels the job (DELETE /v1/jobs/{id}).

type warmOptions struct {
	typ          string
	distribution string
	include      []string
	poll         time.Duration // how often the job is read
	plainEvery   time.Duration // how often a progress line is printed when not on a terminal
}

func newWarmCmd() *cobra.Command {
	cmd, o := newAdminGroup("warm REPO[@REV]", "Prefetch a repository into the cluster, with progress",
		`Prefetch every file of a repository revision into the cluster: the node at
--addr resolves the revision, lists the files (those matching --include, if
given) and has each file's owner fetch it from the Hub, while this command
shows the progress. Ctrl-C cancels the job.

Files already cached are not fetched again; the summary says how many
bytes came from the Hub, from other nodes, or were cached already. The
exit status is 1 if any file could not be fetched.

Examples:
  hfcache warm meta-llama/Llama-3.1-8B
  hfcache warm meta-llama/Llama-3.1-8B@main --include '*.json' --include '*.safetensors'
  hfcache warm HuggingFaceFW/fineweb-edu --type dataset --include 'sample/10BT/*'
  hfcache warm gpt2 -o json > job.json`)
	w := &warmOptions{}
	cmd.Args = exactArgs("REPO[@REV]")
	cmd.RunE = func(cmd *cobra.Command, args []string) error { return runWarm(cmd, o, w, args[0]) }
	fs := cmd.Flags()
	fs.StringVar(&w.typ, "type", "model", "repository type: model, dataset, space or kernel")
	fs.StringVar(&w.distribution, "distribution", "", `distribution whose repository and remote to fetch through (default: "default", else the one at the root)`)
	fs.StringArrayVar(&w.include, "include", nil, "only files matching this glob (repeatable); a glob without / also matches file names in any directory")
	fs.DurationVar(&w.poll, "poll-interval", 250*time.Millisecond, "how often to read the job's progress")
	fs.DurationVar(&w.plainEvery, "progress-interval", 2*time.Second, "how often to print a progress line when the output is not a terminal")
	fs.MarkHidden("poll-interval")
	fs.MarkHidden("progress-interval")
	return cmd
}

// warmJobRequest is the body of POST /v1/jobs.
type warmJobRequest struct {
	Type         string   `json:"type"`
	Repo         string   `json:"repo"`
	Revision     string   `json:"revision,omitempty"`
	Distribution string   `json:"distribution,omitempty"`
	Include      []string `json:"include,omitempty"`
}

// parseRepoRev reads REPO[@REV].
func parseRepoRev(s string) (repo, rev string, err error) {
	repo, rev, hasRev := strings.Cut(strings.TrimSpace(s), "@")
	switch {
	case repo == "":
		return "", "", errors.New("no repo id before '@'")
	case hasRev && rev == "":
		return "", "", errors.New("empty revision after '@'")
	}
	return repo, rev, nil
}

func runWarm(cmd *cobra.Command, o *adminOptions, w *warmOptions, arg string) error {
	c, err := o.client(cmd)
	if err != nil {
		return err
	}
	repo, rev, err := parseRepoRev(arg)
	if err != nil {
		return usageErrorf(cmd, "%s: %v", arg, err)
	}
	typ, err := hf.ParseRepoType(w.typ)
	if err != nil {
		return usageErrorf(cmd, "--type %q: use model, dataset, space or kernel", w.typ)
	}
	for _, g := range w.include {
		if strings.TrimSpace(g) == "" {
			return usageErrorf(cmd, "--include: empty pattern")
		}
	}
	if w.poll <= 0 || w.plainEvery <= 0 {
		return usageErrorf(cmd, "--poll-interval and --progress-interval must be positive")
	}

	// The first Ctrl-C cancels the job; a second one (while canceling)
	// kills the command as usual.
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	resp, err := c.do(ctx, adminRequest{method: http.MethodPost, path: "/v1/jobs",
		body: warmJobRequest{Type: string(typ), Repo: repo, Revision: rev, Distribution: w.distribution, Include: w.include}})
	if err != nil {
		return warmError(err)
	}
	var job node.Job
	if err := c.decode(resp, &job); err != nil {
		return err
	}
	if job.ID == "" {
		return fmt.Errorf("unexpected answer from the admin API at %s: a job without an id", c.base)
	}

	// Progress goes to stdout, or with -o json (stdout is the job's JSON)
	// to stderr when that is a terminal.
	var out io.Writer = cmd.OutOrStdout()
	if o.json() {
		out = io.Discard
		if isTerminal(cmd.ErrOrStderr()) {
			out = cmd.ErrOrStderr()
		}
	}
	p := newProgress(out, isTerminal(out), w.plainEvery, time.Now)
	p.started(job)
	raw := resp.body

	t := time.NewTicker(w.poll)
	defer t.Stop()
	var unreachableSince time.Time
	for job.State == node.JobRunning {
		select {
		case <-ctx.Done():
			stop()
			return cancelWarm(cmd, o, c, p, job)
		case <-t.C:
		}
		resp, err := c.do(ctx, adminRequest{method: http.MethodGet, path: "/v1/jobs/" + url.PathEscape(job.ID)})
		var reach *reachError
		switch {
		case ctx.Err() != nil:
			continue // interrupted: cancel above
		case errors.As(err, &reach):
			// A node that is busy or restarting its listener: keep trying
			// for a while before giving up on the job.
			if unreachableSince.IsZero() {
				unreachableSince = time.Now()
			}
			if time.Since(unreachableSince) > o.timeout {
				p.end()
				return fmt.Errorf("lost track of job %s: %v", job.ID, err)
			}
			continue
		case err != nil:
			p.end()
			return warmError(err)
		}
		unreachableSince = time.Time{}
		if err := c.decode(resp, &job); err != nil {
			p.end()
			return err
		}
		raw = resp.body
		p.update(job)
	}
	p.end()
	if o.json() {
		if err := printJSON(cmd.OutOrStdout(), raw); err != nil {
			return err
		}
	} else {
		printSummary(cmd.OutOrStdout(), job)
	}
	return jobOutcome(job)
}

// cancelWarm cancels the job after Ctrl-C and reports how far it got.
func cancelWarm(cmd *cobra.Command, o *adminOptions, c *adminClient, p *progress, job node.Job) error {
	p.end()
	fmt.Fprintf(cmd.ErrOrStderr(), "interrupted: canceling job %s\n", job.ID)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(cmd.Context()), o.timeout)
	defer cancel()
	resp, err := c.do(ctx, adminRequest{method: http.MethodDelete, path: "/v1/jobs/" + url.PathEscape(job.ID)})
	if err != nil {
		return fmt.Errorf("interrupted; canceling job %s failed: %w", job.ID, warmError(err))
	}
	if err := c.decode(resp, &job); err != nil {
		return err
	}
	if o.json() {
		if err := printJSON(cmd.OutOrStdout(), resp.body); err != nil {
			return err
		}
	} else {
		printSummary(cmd.OutOrStdout(), job)
	}
	if job.State == node.JobRunning || job.State == node.JobCanceled {
		return fmt.Errorf("interrupted: job %s canceled", job.ID)
	}
	return jobOutcome(job)
}

// jobOutcome is the command's error for a finished job: nil when it is done.
func jobOutcome(job node.Job) error {
	switch job.State {
	case node.JobDone:
		return nil
	case node.JobFailed:
		return fmt.Errorf("job %s failed: %s", job.ID, job.Error)
	}
	return fmt.Errorf("job %s %s: %s", job.ID, job.State, job.Error)
}

// warmError says what went wrong starting or following a job in the
// server's words: the job API's errors (an unknown repository, revision or
// distribution, a refused repository) are about the request, not the node.
func warmError(err error) error {
	var ae *apiError
	if !errors.As(err, &ae) {
		return err
	}
	switch ae.Code {
	case "bad_request", "not_found", "repo_not_found", "revision_not_found", "gated_repo", "repo_denied",
		"upstream_refused", "upstream_unreachable", "upstream_rate_limited", "upstream_error", "remote_not_configured", "node_unreachable":
		return errors.New(ae.Message)
	}
	return err
}

// isTerminal reports whether w is a terminal (a progress bar redraws in
// place there; elsewhere progress is printed as lines).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progress draws a job's progress: one line redrawn in place on a
// terminal, else a line every plainEvery.
type progress struct {
	w          io.Writer
	tty        bool
	plainEvery time.Duration
	now        func() time.Time

	samples   []sample // recent (time, bytes fetched), for the rate
	lastPlain time.Time
	lastPhase string
	width     int // of the line drawn last (tty)
}

type sample struct {
	at      time.Time
	fetched int64
}

// rateWindow is how far back the transfer rate is averaged.
const rateWindow = 5 * time.Second

func newProgress(w io.Writer, tty bool, plainEvery time.Duration, now func() time.Time) *progress {
	return &progress{w: w, tty: tty, plainEvery: plainEvery, now: now}
}

func (p *progress) started(job node.Job) {
	commit := ""
	if job.Commit != "" {
		commit = " (commit " + short(job.Commit) + ")"
	}
	fmt.Fprintf(p.w, "warming %s %s@%s%s: job %s on %s\n", job.Type, job.Repo, job.Revision, commit, job.ID, job.Node)
	p.update(job)
}

func (p *progress) update(job node.Job) {
	now := p.now()
	p.samples = append(p.samples, sample{now, job.Bytes.Fetched})
	for len(p.samples) > 2 && now.Sub(p.samples[0].at) > rateWindow {
		p.samples = p.samples[1:]
	}
	if job.State != node.JobRunning {
		return
	}
	line := p.line(job)
	if p.tty {
		pad := max(p.width-len(line), 0)
		fmt.Fprintf(p.w, "\r%s%s", line, strings.Repeat(" ", pad))
		p.width = len(line)
		return
	}
	if job.Phase != p.lastPhase || now.Sub(p.lastPlain) >= p.plainEvery {
		fmt.Fprintln(p.w, line)
		p.lastPlain, p.lastPhase = now, job.Phase
	}
}

// end finishes the line being redrawn.
func (p *progress) end() {
	if p.tty && p.width > 0 {
		fmt.Fprintln(p.w)
		p.width = 0
	}
}

// rate is the bytes per second fetched over the last few seconds.
func (p *progress) rate() float64 {
	if len(p.samples) < 2 {
		return 0
	}
	first, last := p.samples[0], p.samples[len(p.samples)-1]
	dt := last.at.Sub(first.at).Seconds()
	if dt <= 0 {
		return 0
	}
	return float64(last.fetched-first.fetched) / dt
}

func (p *progress) line(job node.Job) string {
	switch job.Phase {
	case node.PhaseResolving:
		return "resolving " + job.Revision + "…"
	case node.PhaseListing:
		return "listing files…"
	}
	f, b := job.Files, job.Bytes
	pct := 100.0
	if b.Total > 0 {
		pct = 100 * float64(b.Done) / float64(b.Total)
	} else if f.Total > 0 {
		pct = 100 * float64(f.Done) / float64(f.Total)
	}
	rate := p.rate()
	eta := "--"
	if rate > 0 {
		if d := time.Duration(float64(b.Total-b.Done) / rate * float64(time.Second)); d < time.Second {
			eta = "<1s"
		} else {
			eta = fmtDuration(d)
		}
	}
	failed := ""
	if f.Failed > 0 {
		failed = fmt.Sprintf(" (%d failed)", f.Failed)
	}
	s := fmt.Sprintf("%d/%d files%s, %s / %s (%.0f%%), %s/s, ETA %s",
		f.Done, f.Total, failed, fmtBytes(b.Done), fmtBytes(b.Total), pct, fmtBytes(int64(rate)), eta)
	if p.tty {
		s = bar(pct, 24) + " " + s
	}
	return s
}

// bar is a text progress bar of width cells.
func bar(pct float64, width int) string {
	n := int(pct / 100 * float64(width))
	n = min(max(n, 0), width)
	return "[" + strings.Repeat("=", n) + strings.Repeat(" ", width-n) + "]"
}

// printSummary writes what a finished (or canceled) job did.
func printSummary(w io.Writer, job node.Job) {
	took := time.Duration(0)
	if job.FinishedAt != nil {
		took = job.FinishedAt.Sub(job.StartedAt)
	}
	commit := ""
	if job.Commit != "" {
		commit = " (commit " + short(job.Commit) + ")"
	}
	f, b := job.Files, job.Bytes
	fmt.Fprintf(w, "%s: %s %s@%s%s in %s\n", job.State, job.Type, job.Repo, job.Revision, commit, fmtDuration(took))
	skipped := ""
	if f.Skipped > 0 {
		skipped = fmt.Sprintf(", %d skipped: over the remote's max file size", f.Skipped)
	}
	fmt.Fprintf(w, "  files  %d of %d (%d fetched, %d already cached, %d failed%s)\n",
		f.Done, f.Total, f.Done-f.Cached, f.Cached, f.Failed, skipped)
	fmt.Fprintf(w, "  bytes  %s of %s (%s from upstream, %s from peers, %s already cached)\n",
		fmtBytes(b.Done), fmtBytes(b.Total), fmtBytes(b.Upstream), fmtBytes(b.Peer), fmtBytes(b.Cached))
	if took > 0 {
		fmt.Fprintf(w, "  rate   %s/s\n", fmtBytes(int64(float64(b.Fetched)/took.Seconds())))
	}
	for _, e := range job.Errors {
		fmt.Fprintf(w, "  error  %s: %s\n", e.Path, e.Error)
	}
	if n := f.Failed - len(job.Errors); n > 0 {
		fmt.Fprintf(w, "  error  … and %d more\n", n)
	}
	if job.State != node.JobDone && job.Error != "" {
		fmt.Fprintf(w, "  reason %s\n", job.Error)
	}
}

func short(commit string) string { return commit[:min(len(commit), 7)] }

// fmtBytes writes a byte count in binary units: 0 B, 512 B, 1.5 KiB, 3.2 GiB.
func fmtBytes(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, unit := float64(n), ""
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB", "PiB"} {
		v, unit = v/1024, u
		if v < 1024 {
			break
		}
	}
	return fmt.Sprintf("%.1f %s", v, unit)
}

// fmtDuration writes a duration for people: 850ms, 4.2s, 3m05s, 2h10m.
func fmtDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	d = d.Round(time.Minute)
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}
