package main

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/spf13/cobra"
)

// newClusterCmd builds `hfcache cluster members|raft|transfer-leadership`.
func newClusterCmd() *cobra.Command {
	cmd, o := newAdminGroup("cluster", "Show the cluster: gossip members and Raft state",
		`Show the cluster as the node at --addr sees it: the gossip members with
their endpoints and Raft roles, the Raft state and servers, and move Raft
leadership to another voter (e.g. before restarting the leader).`)
	cmd.AddCommand(
		&cobra.Command{
			Use:   "members",
			Short: "List the gossip members and their Raft roles",
			Args:  exactArgs(),
			RunE: func(cmd *cobra.Command, _ []string) error {
				var v membersView
				return clusterCall(cmd, o, http.MethodGet, "/v1/cluster/members", &v, v.print)
			},
		},
		&cobra.Command{
			Use:   "raft",
			Short: "Show the Raft state, indexes and servers",
			Args:  exactArgs(),
			RunE: func(cmd *cobra.Command, _ []string) error {
				var v raftView
				return clusterCall(cmd, o, http.MethodGet, "/v1/cluster/raft", &v, v.print)
			},
		},
		&cobra.Command{
			Use:   "transfer-leadership",
			Short: "Make another voter the Raft leader",
			Args:  exactArgs(),
			RunE: func(cmd *cobra.Command, _ []string) error {
				var v struct {
					Leader string `json:"leader"`
				}
				return clusterCall(cmd, o, http.MethodPost, "/v1/cluster/transfer-leadership", &v, func(cmd *cobra.Command) error {
					_, err := fmt.Fprintf(cmd.OutOrStdout(), "leadership transferred to %s\n", v.Leader)
					return err
				})
			},
		},
	)
	return cmd
}

// clusterCall makes one call and prints its answer: as the server sent it
// with -o json, else decoded into v and shown by table.
func clusterCall(cmd *cobra.Command, o *adminOptions, method, path string, v any, table func(*cobra.Command) error) error {
	c, err := o.client(cmd)
	if err != nil {
		return err
	}
	resp, err := c.do(cmd.Context(), adminRequest{method: method, path: path})
	if err != nil {
		return err
	}
	if o.json() {
		return printJSON(cmd.OutOrStdout(), resp.body)
	}
	if err := c.decode(resp, v); err != nil {
		return err
	}
	return table(cmd)
}

type membersView struct {
	Node    string `json:"node"`
	Members []struct {
		Name       string `json:"name"`
		State      string `json:"state"`
		Self       bool   `json:"self"`
		Suffrage   string `json:"suffrage"`
		Leader     bool   `json:"leader"`
		ClientURL  string `json:"client_url"`
		AdminURL   string `json:"admin_url"`
		GossipAddr string `json:"gossip_addr"`
		RaftAddr   string `json:"raft_addr"`
		Version    string `json:"version"`
	} `json:"members"`
}

func (v *membersView) print(cmd *cobra.Command) error {
	t := newTable(cmd.OutOrStdout(), "NAME", "STATE", "SUFFRAGE", "LEADER", "CLIENT_URL", "ADMIN_URL", "GOSSIP_ADDR", "RAFT_ADDR", "VERSION")
	for _, m := range v.Members {
		name := m.Name
		if m.Self {
			name += " (self)"
		}
		t.row(name, m.State, m.Suffrage, yesNo(m.Leader, "yes"), m.ClientURL, m.AdminURL, m.GossipAddr, m.RaftAddr, m.Version)
	}
	return t.flush()
}

type raftView struct {
	State        string `json:"state"`
	Term         uint64 `json:"term"`
	LastIndex    uint64 `json:"last_index"`
	AppliedIndex uint64 `json:"applied_index"`
	CommitIndex  uint64 `json:"commit_index"`
	LeaderID     string `json:"leader_id"`
	LeaderAddr   string `json:"leader_addr"`
	Servers      []struct {
		ID       string `json:"id"`
		Address  string `json:"address"`
		Suffrage string `json:"suffrage"`
		Leader   bool   `json:"leader"`
	} `json:"servers"`
}

func (v *raftView) print(cmd *cobra.Command) error {
	w := cmd.OutOrStdout()
	leader := v.LeaderID
	if v.LeaderAddr != "" {
		leader += " (" + v.LeaderAddr + ")"
	}
	t := newTable(w, "STATE", v.State)
	t.row("TERM", strconv.FormatUint(v.Term, 10))
	t.row("LAST_INDEX", strconv.FormatUint(v.LastIndex, 10))
	t.row("COMMIT_INDEX", strconv.FormatUint(v.CommitIndex, 10))
	t.row("APPLIED_INDEX", strconv.FormatUint(v.AppliedIndex, 10))
	t.row("LEADER", leader)
	if err := t.flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	t = newTable(w, "ID", "ADDRESS", "SUFFRAGE", "LEADER")
	for _, s := range v.Servers {
		t.row(s.ID, s.Address, s.Suffrage, yesNo(s.Leader, "yes"))
	}
	return t.flush()
}
