package fault

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Every error of the module that names a field names it once: the transports
// show "field: message" (gRPC status text, the command line, config errors)
// or the field beside the message (the HTTP body), so a message starting
// with its own field reads "k: k must be between…". This reads the source
// for fault.Field calls and fault.Error literals with a literal field and
// message.
func TestMessagesDoNotRepeatTheirField(t *testing.T) {
	root := filepath.Join("..")
	fset := token.NewFileSet()
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || n == "testdata" || n == "proto" || n == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		inFault := f.Name.Name == "fault"
		ast.Inspect(f, func(n ast.Node) bool {
			var field, msg string
			switch x := n.(type) {
			case *ast.CallExpr:
				if !isFieldFunc(x.Fun, inFault) || len(x.Args) < 3 {
					return true
				}
				field, msg = stringLit(x.Args[0]), stringLit(x.Args[2])
			case *ast.CompositeLit:
				if !isErrorType(x.Type, inFault) {
					return true
				}
				for _, e := range x.Elts {
					if kv, ok := e.(*ast.KeyValueExpr); ok {
						switch id, _ := kv.Key.(*ast.Ident); {
						case id == nil:
						case id.Name == "Field":
							field = stringLit(kv.Value)
						case id.Name == "Message":
							msg = stringLit(kv.Value)
						}
					}
				}
			default:
				return true
			}
			if field == "" || msg == "" {
				return true
			}
			checked++
			if startsWithField(msg, field) {
				t.Errorf("%s: the message %q repeats its field %q: say %q", fset.Position(n.Pos()), msg, field, field+": "+msg)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("checked only %d messages: is the walk looking at the module?", checked)
	}
}

func isFieldFunc(e ast.Expr, inFault bool) bool {
	switch x := e.(type) {
	case *ast.SelectorExpr:
		id, ok := x.X.(*ast.Ident)
		return ok && id.Name == "fault" && x.Sel.Name == "Field"
	case *ast.Ident:
		return inFault && x.Name == "Field"
	}
	return false
}

func isErrorType(e ast.Expr, inFault bool) bool {
	switch x := e.(type) {
	case *ast.SelectorExpr:
		id, ok := x.X.(*ast.Ident)
		return ok && id.Name == "fault" && x.Sel.Name == "Error"
	case *ast.Ident:
		return inFault && x.Name == "Error"
	}
	return false
}

// stringLit is the value of a string literal, or "".
func stringLit(e ast.Expr) string {
	if b, ok := e.(*ast.BasicLit); ok && b.Kind == token.STRING {
		s, err := strconv.Unquote(b.Value)
		if err == nil {
			return s
		}
	}
	return ""
}
