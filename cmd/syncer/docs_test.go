package main

import (
	"bufio"
	"context"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/syncerhq/syncer/store"
)

var update = flag.Bool("update", false, "rewrite generated documentation")

// docs/configuration.md is generated from Config; systemd/syncer.env.example
// is written by hand but lists exactly Config's variables, each with its
// default. A variable added to one and not the others fails here.
func TestConfigurationDocs(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "configuration.md")
	want := configReference()
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("docs/configuration.md is out of date with Config: run go test ./cmd/syncer -run TestConfigurationDocs -update")
	}

	f, err := os.Open(filepath.Join("..", "..", "systemd", "syncer.env.example"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line := regexp.MustCompile(`^#?(SYNCER_[A-Z0-9_]+)=(.*)$`)
	example := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := line.FindStringSubmatch(sc.Text()); m != nil {
			v := m[2]
			if u, err := strconv.Unquote(v); err == nil {
				v = u
			}
			example[m[1]] = v
		}
	}
	for _, v := range configVars() {
		got, ok := example[v.Name]
		switch {
		case !ok:
			t.Errorf("systemd/syncer.env.example lacks %s", v.Name)
		case got != v.Default:
			t.Errorf("systemd/syncer.env.example shows %s=%q, but its default is %q", v.Name, got, v.Default)
		}
		delete(example, v.Name)
	}
	for name := range example {
		t.Errorf("systemd/syncer.env.example sets %s, which Config does not know", name)
	}
}

// docs/views.md describes every view of schema.sql and every column of it.
func TestViewsDocs(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "views.md"))
	if err != nil {
		t.Fatal(err)
	}
	sections := viewSections(string(doc))
	dir := t.TempDir()
	st, err := store.Open(context.Background(), dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	db, err := store.OpenReports(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT v.name, c.name FROM sqlite_schema v, pragma_table_info(v.name) c WHERE v.type = 'view' ORDER BY v.name, c.cid`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	views := 0
	seen := map[string]bool{}
	for rows.Next() {
		var view, col string
		if err := rows.Scan(&view, &col); err != nil {
			t.Fatal(err)
		}
		if !seen[view] {
			seen[view] = true
			views++
		}
		sec, ok := sections[view]
		if !ok {
			if seen[view+"/missing"] {
				continue
			}
			seen[view+"/missing"] = true
			t.Errorf("docs/views.md has no section for view %s", view)
			continue
		}
		// A latest_ view has its base view's columns: either section may name them.
		base := sections[strings.TrimPrefix(view, "latest_")]
		if !strings.Contains(sec, "`"+col+"`") && !strings.Contains(base, "`"+col+"`") {
			t.Errorf("docs/views.md: view %s: column %s is not described", view, col)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if views < 10 {
		t.Fatalf("found %d views in the schema; the query is wrong", views)
	}
}

// viewSections splits docs/views.md at its view headings (a line starting
// **`name`** or **`a`, `b`**): the text of each, by view name.
func viewSections(doc string) map[string]string {
	heading := regexp.MustCompile("^\\*\\*(`[a-z_]+`(?:,? (?:and )?`[a-z_]+`)*)\\*\\*")
	name := regexp.MustCompile("`([a-z_]+)`")
	out := map[string]string{}
	var current []string
	for _, l := range strings.Split(doc, "\n") {
		if m := heading.FindStringSubmatch(l); m != nil {
			current = nil
			for _, n := range name.FindAllStringSubmatch(m[1], -1) {
				current = append(current, n[1])
			}
		} else if strings.HasPrefix(l, "#") {
			current = nil
		}
		for _, n := range current {
			out[n] += l + "\n"
		}
	}
	return out
}
