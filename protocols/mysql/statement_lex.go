package mysql

import "strings"

// Statement mode reads SQL a little more closely than Classify does: it
// needs the statement boundaries of a multi-statement query (to run and
// log each statement on its own), the function calls, variables,
// placeholders and clauses that decide whether a statement is safe to log,
// and the tables it writes. It still does not parse: sqlScan splits text
// into tokens with positions, and the rules in statement_safety.go look at
// token sequences.

// sqlTokKind is the kind of a scanned token.
type sqlTokKind uint8

const (
	tkWord    sqlTokKind = iota // keyword, unquoted name or number
	tkIdent                     // `quoted name`
	tkString                    // 'string' or "string"
	tkUserVar                   // @name, @'name', @`name`
	tkSysVar                    // @@name, @@session.name …
	tkParam                     // ? placeholder
	tkPunct                     // one punctuation byte: ( ) , . = …
	tkEnd                       // ; ending a statement
)

// sqlTok is one token; text is the word, the unquoted name, the variable
// name (lower case for system variables, without scope), or the byte.
type sqlTok struct {
	kind     sqlTokKind
	text     string
	pos, end int // byte range in the scanned text
	// space says whitespace or a comment came right before the token.
	space bool
}

func (t sqlTok) is(w string) bool { return t.kind == tkWord && strings.EqualFold(t.text, w) }

func (t sqlTok) punct(c byte) bool { return t.kind == tkPunct && len(t.text) == 1 && t.text[0] == c }

// sqlScan splits q into tokens. Comments are skipped, except the bodies of
// executable comments (/*! … */, /*M! … */), which the server runs. With
// backslashEscapes a backslash escapes the next byte in strings.
func sqlScan(q string, backslashEscapes bool) []sqlTok {
	toks, _ := sqlScanSpans(q, backslashEscapes)
	return toks
}

// execSpan is the byte range of an executable comment, from its "/*!" to
// the end of its "*/" (or of the text, when it is not closed). cut says a
// ';' inside it ends a statement.
type execSpan struct {
	pos, end int
	cut      bool
}

// sqlScanSpans is sqlScan that also returns the executable comments' spans,
// so that a statement cut from the text keeps the comment's delimiters
// around the tokens it takes from inside one.
func sqlScanSpans(q string, backslashEscapes bool) ([]sqlTok, []execSpan) {
	var toks []sqlTok
	var spans []execSpan
	open := -1 // start of the executable comment being scanned
	cut := false
	n := len(q)
	space := false
	emit := func(t sqlTok) {
		t.space = space
		space = false
		toks = append(toks, t)
	}
	for i := 0; i < n; {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			space = true
			i++
		case c == '#':
			space = true
			i = skipLine(q, i)
		case c == '-' && i+1 < n && q[i+1] == '-' && (i+2 == n || isSpaceOrCtl(q[i+2])):
			space = true
			i = skipLine(q, i)
		case c == '/' && i+1 < n && q[i+1] == '*':
			space = true
			if i+2 < n && q[i+2] == '!' {
				open = i
				i = skipDigits(q, i+3)
				continue
			}
			if i+3 < n && (q[i+2] == 'M' || q[i+2] == 'm') && q[i+3] == '!' {
				open = i
				i = skipDigits(q, i+4)
				continue
			}
			end := strings.Index(q[i+2:], "*/")
			if end < 0 {
				i = n
				continue
			}
			i += 2 + end + 2
		case c == '*' && i+1 < n && q[i+1] == '/':
			// The end of an executable comment.
			space = true
			i += 2
			if open >= 0 {
				spans = append(spans, execSpan{open, i, cut})
				open, cut = -1, false
			}
		case c == ';':
			cut = cut || open >= 0
			emit(sqlTok{kind: tkEnd, text: ";", pos: i, end: i + 1})
			i++
		case c == '\'' || c == '"':
			j, _ := skipQuoted(q, i, backslashEscapes)
			emit(sqlTok{kind: tkString, pos: i, end: j})
			i = j
		case c == '`':
			j, _ := skipQuoted(q, i, false)
			emit(sqlTok{kind: tkIdent, text: unquoteIdent(q[i:j]), pos: i, end: j})
			i = j
		case c == '?':
			emit(sqlTok{kind: tkParam, text: "?", pos: i, end: i + 1})
			i++
		case c == '@':
			j, tok := scanVar(q, i, backslashEscapes)
			emit(tok)
			i = j
		case isWordByte(c):
			j := i + 1
			for j < n && isWordByte(q[j]) {
				j++
			}
			emit(sqlTok{kind: tkWord, text: q[i:j], pos: i, end: j})
			i = j
		default:
			emit(sqlTok{kind: tkPunct, text: q[i : i+1], pos: i, end: i + 1})
			i++
		}
	}
	if open >= 0 {
		spans = append(spans, execSpan{open, n, cut})
	}
	return toks, spans
}

// scanVar reads a variable starting at q[i] == '@'.
func scanVar(q string, i int, backslashEscapes bool) (int, sqlTok) {
	n := len(q)
	if i+1 < n && q[i+1] == '@' {
		// @@[global.|session.|local.]name, names possibly `quoted`.
		j := i + 2
		name := ""
		for part := 0; part < 2; part++ {
			start := j
			if j < n && q[j] == '`' {
				k, _ := skipQuoted(q, j, false)
				name = unquoteIdent(q[j:k])
				j = k
			} else {
				for j < n && isWordByte(q[j]) {
					j++
				}
				name = q[start:j]
			}
			low := strings.ToLower(name)
			if part == 0 && (low == "global" || low == "session" || low == "local") && j < n && q[j] == '.' {
				j++
				continue
			}
			break
		}
		return j, sqlTok{kind: tkSysVar, text: strings.ToLower(name), pos: i, end: j}
	}
	j := i + 1
	if j < n && (q[j] == '\'' || q[j] == '"' || q[j] == '`') {
		k, _ := skipQuoted(q, j, backslashEscapes && q[j] != '`')
		return k, sqlTok{kind: tkUserVar, text: unquoteIdent(q[j:k]), pos: i, end: k}
	}
	for j < n && (isWordByte(q[j]) || q[j] == '.') {
		j++
	}
	return j, sqlTok{kind: tkUserVar, text: q[i+1 : j], pos: i, end: j}
}

// unquoteIdent removes the quotes of a quoted name or string and undoes
// doubled quotes (backslash escapes are left as they are: names never
// have them, and strings are not read).
func unquoteIdent(s string) string {
	if len(s) < 2 {
		return ""
	}
	quote := s[0]
	inner := s[1:]
	if inner[len(inner)-1] == quote {
		inner = inner[:len(inner)-1]
	}
	return strings.ReplaceAll(inner, string([]byte{quote, quote}), string(quote))
}

// sqlPiece is one statement of a query.
type sqlPiece struct {
	text string
	toks []sqlTok // positions relative to text
}

// splitStatements cuts a query into its statements at the ';' that end
// them. A compound statement (a stored program body, BEGIN NOT ATOMIC …
// END, IF … END IF outside a program) is one statement whatever ';' it
// holds. Empty statements are left out.
func splitStatements(q string, backslashEscapes bool) []sqlPiece {
	toks, spans := sqlScanSpans(q, backslashEscapes)
	var out []sqlPiece
	start := 0 // index in toks of the statement's first token
	depth := 0
	compound := false
	flush := func(endTok int) {
		if endTok > start {
			first, last := toks[start], toks[endTok-1]
			from, to := first.pos, last.end
			// A statement that starts or ends inside an executable
			// comment ("CREATE TABLE t (…) /*! ENGINE = InnoDB */") keeps
			// the comment's delimiters: cut at the tokens, the text would
			// hold an unclosed "/*!" that the server cannot parse.
			// (An executable comment holding a ';' is cut like the server
			// cuts it, into statements left without the delimiters.)
			for _, sp := range spans {
				if sp.cut {
					continue
				}
				if sp.pos < from && from < sp.end {
					from = sp.pos
				}
				if sp.pos < to && to <= sp.end {
					to = sp.end
				}
			}
			text := q[from:to]
			st := make([]sqlTok, endTok-start)
			for k := range st {
				t := toks[start+k]
				t.pos -= from
				t.end -= from
				st[k] = t
			}
			out = append(out, sqlPiece{text: text, toks: st})
		}
	}
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		if i == start && t.kind != tkEnd {
			compound = opensCompound(toks[i:])
		}
		if t.kind == tkEnd {
			if depth <= 0 {
				flush(i)
				start, depth, compound = i+1, 0, false
			}
			continue
		}
		if !compound || t.kind != tkWord {
			continue
		}
		prevEnd := i > start && toks[i-1].is("END")
		switch strings.ToUpper(t.text) {
		case "BEGIN":
			next := peekWord(toks, i+1)
			if next != "WORK" {
				depth++
			}
		case "CASE", "LOOP", "WHILE", "REPEAT":
			if !prevEnd {
				depth++
			}
		case "IF":
			if prevEnd {
				break
			}
			if i+1 < len(toks) && (toks[i+1].punct('(') || toks[i+1].is("EXISTS") || toks[i+1].is("NOT")) {
				break
			}
			depth++
		case "END":
			depth--
		}
	}
	flush(len(toks))
	return out
}

// peekWord is the upper-cased word at toks[i], or "".
func peekWord(toks []sqlTok, i int) string {
	if i < len(toks) && toks[i].kind == tkWord {
		return strings.ToUpper(toks[i].text)
	}
	return ""
}

// opensCompound says whether a statement starting with toks holds a
// compound statement whose ';' do not end it: CREATE of a procedure,
// function, trigger or event, BEGIN NOT ATOMIC, a labelled block, or a
// flow-control statement outside a stored program (MariaDB).
func opensCompound(toks []sqlTok) bool {
	if len(toks) == 0 {
		return false
	}
	w := peekWord(toks, 0)
	switch w {
	case "CREATE", "ALTER":
		for i := 1; i < len(toks) && i < 40; i++ {
			switch peekWord(toks, i) {
			case "PROCEDURE", "FUNCTION", "TRIGGER", "EVENT", "PACKAGE":
				return true
			case "TABLE", "INDEX", "VIEW", "DATABASE", "SCHEMA", "USER", "ROLE", "SEQUENCE", "SERVER":
				return false
			}
		}
	case "BEGIN":
		return peekWord(toks, 1) == "NOT"
	case "IF", "WHILE", "LOOP", "REPEAT", "CASE":
		return true
	}
	// label: BEGIN …
	return len(toks) > 2 && toks[0].kind == tkWord && toks[1].punct(':') && toks[2].is("BEGIN")
}
