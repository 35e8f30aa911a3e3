package main

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// The admin CLI: `hfcache remote|repository|distribution|cluster ...` talk to
// one node's admin API (/v1/...) over HTTP. Every run builds its own
// adminClient from its flags; nothing is shared between runs.

// addAdminCommands registers the admin CLI (remote, repository,
// distribution, cluster, warm), which talks to a node's admin API.
func addAdminCommands(root *cobra.Command) {
	for _, k := range objectKinds() {
		root.AddCommand(newObjectCmd(k))
	}
	root.AddCommand(newClusterCmd())
	root.AddCommand(newWarmCmd())
}

const defaultAdminAddr = "http://127.0.0.1:8081"

// adminOptions are the flags every admin command shares. They are persistent
// flags of one top-level command (remote, repository, ...), so each command
// tree has its own.
type adminOptions struct {
	flags   *pflag.FlagSet // the persistent flags below, for environment binding
	addr    string
	token   string
	output  string
	timeout time.Duration
}

// newAdminGroup builds a top-level admin command with the shared flags. Run
// bare it prints its help; with an unknown subcommand it is a usage error.
func newAdminGroup(use, short, long string) (*cobra.Command, *adminOptions) {
	o := &adminOptions{}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf(cmd, "unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageErrorf(c, "%v", err)
	})
	fs := cmd.PersistentFlags()
	fs.StringVar(&o.addr, "addr", defaultAdminAddr, "admin API URL of any node (env HFCACHE_ADDR)")
	fs.StringVar(&o.token, "admin-token", "", "admin API token, sent as a bearer token (env HFCACHE_ADMIN_TOKEN; prefer the environment: flags show up in ps)")
	fs.StringVarP(&o.output, "output", "o", "table", "output format: table or json")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "timeout of each request to the admin API")
	o.flags = fs
	return cmd, o
}

// client validates the shared flags, fills unset ones from HFCACHE_*
// variables, and builds the client for this run.
func (o *adminOptions) client(cmd *cobra.Command) (*adminClient, error) {
	if err := bindEnv(o.flags, os.Getenv); err != nil {
		return nil, usageErrorf(cmd, "%v", err)
	}
	if o.output != "table" && o.output != "json" {
		return nil, usageErrorf(cmd, "--output %q: use table or json", o.output)
	}
	if o.timeout <= 0 {
		return nil, usageErrorf(cmd, "--timeout %v: must be positive", o.timeout)
	}
	base, err := adminBaseURL(o.addr)
	if err != nil {
		return nil, usageErrorf(cmd, "%v", err)
	}
	return newAdminClient(base, o.token, o.timeout), nil
}

func (o *adminOptions) json() bool { return o.output == "json" }

// adminBaseURL normalizes --addr: a bare host:port means http, and the result
// has no trailing slash, so "/v1/..." can be appended.
func adminBaseURL(addr string) (string, error) {
	s := strings.TrimSpace(addr)
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("--addr %q: want the admin API URL of a node, like %s", addr, defaultAdminAddr)
	}
	u.RawQuery, u.Fragment = "", ""
	return strings.TrimRight(u.String(), "/"), nil
}

// usageError is a mistake on the command line (exit status 2), as opposed to
// a failure of the operation (exit status 1).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usageErrorf(cmd *cobra.Command, format string, args ...any) error {
	return usageError{fmt.Errorf(format+"\nRun '%s --help' for usage.", append(args, cmd.CommandPath())...)}
}

// exitCode is the process exit status for an error returned by the command
// tree: 0 for none, 2 for usage mistakes, 1 for everything else.
func exitCode(err error) int {
	var u usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &u):
		return 2
	}
	return 1
}

// exactArgs is cobra.ExactArgs naming the arguments and reporting a usage
// error.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			want := "no arguments"
			if len(names) > 0 {
				want = strings.Join(names, " ")
			}
			return usageErrorf(cmd, "%s takes %s, got %d argument(s)", cmd.CommandPath(), want, len(args))
		}
		for i, a := range args {
			if strings.TrimSpace(a) == "" {
				return usageErrorf(cmd, "%s: %s is empty", cmd.CommandPath(), names[i])
			}
		}
		return nil
	}
}
