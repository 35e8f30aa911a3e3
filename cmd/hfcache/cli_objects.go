package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// objectKind is one kind of configuration object the admin API stores
// through Raft: remotes, repositories, distributions.
type objectKind struct {
	name     string // singular, the command: "remote"
	path     string // the collection under /v1: "remotes"
	short    string
	long     string
	example  string
	newFlags func() objectFlags
	columns  []string
	row      func(json.RawMessage) ([]string, error)
	secret   string // a write-only field never to print ("token"), if any
}

// objectFlags are the create/update flags of one kind.
type objectFlags interface {
	define(fs *pflag.FlagSet)
	// set writes the flags given on the command line (fs.Changed) into obj,
	// which is empty on create and the stored object on update.
	set(cmd *cobra.Command, fs *pflag.FlagSet, obj jsonObject) error
}

// rowOf decodes one object into its view and returns its table row.
func rowOf[T interface{ row() []string }](raw json.RawMessage) ([]string, error) {
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	return v.row(), nil
}

func objectKinds() []objectKind {
	return []objectKind{remoteKind(), repositoryKind(), distributionKind()}
}

func (k objectKind) itemPath(name string) string {
	return "/v1/" + k.path + "/" + url.PathEscape(name)
}

func (k objectKind) subject(name string) string { return fmt.Sprintf("%s %q", k.name, name) }

// newObjectCmd builds `hfcache <kind> list|get|create|update|delete`.
func newObjectCmd(k objectKind) *cobra.Command {
	cmd, o := newAdminGroup(k.name, k.short, k.long)
	cmd.Example = k.example
	cmd.AddCommand(
		&cobra.Command{
			Use:     "list",
			Aliases: []string{"ls"},
			Short:   "List every " + k.name,
			Args:    exactArgs(),
			RunE: func(cmd *cobra.Command, _ []string) error {
				c, err := o.client(cmd)
				if err != nil {
					return err
				}
				resp, err := c.do(cmd.Context(), adminRequest{method: http.MethodGet, path: "/v1/" + k.path})
				if err != nil {
					return err
				}
				var objs []jsonObject
				if err := c.decode(resp, &objs); err != nil {
					return err
				}
				return k.print(cmd, o, objs, true)
			},
		},
		&cobra.Command{
			Use:   "get NAME",
			Short: "Show one " + k.name,
			Args:  exactArgs("NAME"),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := o.client(cmd)
				if err != nil {
					return err
				}
				obj, err := k.get(cmd, c, args[0])
				if err != nil {
					return err
				}
				return k.print(cmd, o, []jsonObject{obj}, false)
			},
		},
		k.writeCmd(o, "create"),
		k.writeCmd(o, "update"),
		&cobra.Command{
			Use:     "delete NAME",
			Aliases: []string{"rm"},
			Short:   "Delete a " + k.name,
			Args:    exactArgs("NAME"),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := o.client(cmd)
				if err != nil {
					return err
				}
				name := args[0]
				resp, err := c.do(cmd.Context(), adminRequest{method: http.MethodDelete, path: k.itemPath(name), subject: k.subject(name), op: "delete"})
				if err != nil {
					return err
				}
				if o.json() {
					return printJSON(cmd.OutOrStdout(), resp.body)
				}
				if resp.index == "" {
					var body struct {
						Index uint64 `json:"index"`
					}
					if json.Unmarshal(resp.body, &body) == nil && body.Index > 0 {
						resp.index = strconv.FormatUint(body.Index, 10)
					}
				}
				fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", k.subject(name))
				printIndex(cmd, o, resp)
				return nil
			},
		},
	)
	return cmd
}

// writeCmd builds create (PUT with If-Match: 0: the object must not exist)
// or update (GET, change the flags given, PUT with If-Match: <version>, so a
// concurrent change is a conflict rather than a lost update).
func (k objectKind) writeCmd(o *adminOptions, op string) *cobra.Command {
	f := k.newFlags()
	ofs := pflag.NewFlagSet(op, pflag.ContinueOnError)
	f.define(ofs)
	cmd := &cobra.Command{
		Use:  op + " NAME",
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client(cmd)
			if err != nil {
				return err
			}
			name := args[0]
			obj, ifMatch := jsonObject{}, "0"
			if op == "update" {
				changed := false
				ofs.VisitAll(func(fl *pflag.Flag) { changed = changed || fl.Changed })
				if !changed {
					return usageErrorf(cmd, "nothing to update: give at least one flag to change")
				}
				if obj, err = k.get(cmd, c, name); err != nil {
					return err
				}
				var version uint64
				if err := json.Unmarshal(obj["version"], &version); err != nil || version == 0 {
					return fmt.Errorf("the admin API sent %s without a version: cannot update it safely", k.subject(name))
				}
				ifMatch = strconv.FormatUint(version, 10)
			}
			if err := obj.put("name", name); err != nil {
				return err
			}
			if err := f.set(cmd, ofs, obj); err != nil {
				return err
			}
			resp, err := c.do(cmd.Context(), adminRequest{method: http.MethodPut, path: k.itemPath(name), body: obj,
				ifMatch: ifMatch, subject: k.subject(name), op: op})
			if err != nil {
				return err
			}
			var stored jsonObject
			if err := c.decode(resp, &stored); err != nil {
				return err
			}
			if err := k.print(cmd, o, []jsonObject{stored}, false); err != nil {
				return err
			}
			printIndex(cmd, o, resp)
			return nil
		},
	}
	if op == "create" {
		cmd.Short = "Create a " + k.name + " (it must not exist)"
	} else {
		cmd.Short = "Change the given settings of a " + k.name + " (the others are kept)"
	}
	cmd.Flags().AddFlagSet(ofs)
	return cmd
}

func (k objectKind) get(cmd *cobra.Command, c *adminClient, name string) (jsonObject, error) {
	resp, err := c.do(cmd.Context(), adminRequest{method: http.MethodGet, path: k.itemPath(name), subject: k.subject(name)})
	if err != nil {
		return nil, err
	}
	var obj jsonObject
	if err := c.decode(resp, &obj); err != nil {
		return nil, err
	}
	if obj == nil {
		return nil, fmt.Errorf("the admin API sent no %s", k.subject(name))
	}
	return obj, nil
}

// print writes objects as a table or as JSON (one object for get and writes,
// an array for list). A write-only secret is dropped even if a server sent
// it.
func (k objectKind) print(cmd *cobra.Command, o *adminOptions, objs []jsonObject, list bool) error {
	if k.secret != "" {
		for _, obj := range objs {
			delete(obj, k.secret)
		}
	}
	w := cmd.OutOrStdout()
	if o.json() {
		if list {
			if objs == nil {
				objs = []jsonObject{}
			}
			return printValue(w, objs)
		}
		return printValue(w, objs[0])
	}
	if len(objs) == 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "no %s\n", k.path)
		return nil
	}
	t := newTable(w, k.columns...)
	for _, obj := range objs {
		raw, err := json.Marshal(obj)
		if err != nil {
			return err
		}
		cells, err := k.row(raw)
		if err != nil {
			return fmt.Errorf("the admin API sent a %s this CLI cannot read: %v", k.name, err)
		}
		t.row(cells...)
	}
	return t.flush()
}

// printIndex tells, in table mode, which Raft index a write was applied at:
// any node serves reads at or after it.
func printIndex(cmd *cobra.Command, o *adminOptions, resp *adminResponse) {
	if resp.index != "" && !o.json() {
		fmt.Fprintf(cmd.ErrOrStderr(), "applied at index %s\n", resp.index)
	}
}

// stringList is a repeatable flag value sent as a JSON array. Empty values
// are dropped, so an empty --include clears the list.
func stringList(vs []string) []string {
	out := []string{}
	for _, v := range vs {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// readSecret reads a secret from standard input, without surrounding white
// space (a trailing newline from echo or a file).
func readSecret(cmd *cobra.Command, flag string) (string, error) {
	b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 64<<10))
	if err != nil {
		return "", fmt.Errorf("%s: reading standard input: %v", flag, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", usageErrorf(cmd, "%s: standard input is empty", flag)
	}
	return s, nil
}
