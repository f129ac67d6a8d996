//! `client --tree`: the answers to `T`, drawn as the tree of the overlay they reached.
//!
//! Every answer to a topology query is the path its flood took, `"ip:port ip:port ..."`
//! from the servent the client asked to the one that answered. Together they form a
//! tree rooted at the first (each servent handles a query once, so it is reached by
//! one path). Pure: strings in, text out.

/// One servent of the tree and those it passed the query on to, in order of first
/// appearance.
struct Node<'a> {
    name: &'a str,
    children: Vec<Node<'a>>,
}

impl<'a> Node<'a> {
    fn child(&mut self, name: &'a str) -> &mut Node<'a> {
        let index = match self.children.iter().position(|c| c.name == name) {
            Some(index) => index,
            None => {
                self.children.push(Node {
                    name,
                    children: Vec::new(),
                });
                self.children.len() - 1
            }
        };
        &mut self.children[index]
    }
}

/// The paths merged into trees (one per first element, normally one in all), drawn
/// with box-drawing lines, one servent per line.
pub fn draw<S: AsRef<str>>(paths: &[S]) -> String {
    let mut roots = Node {
        name: "",
        children: Vec::new(),
    };
    for path in paths {
        let mut node = &mut roots;
        for hop in path.as_ref().split_whitespace() {
            node = node.child(hop);
        }
    }
    let mut text = String::new();
    for root in &roots.children {
        text.push_str(root.name);
        text.push('\n');
        draw_children(root, "", &mut text);
    }
    text
}

fn draw_children(node: &Node, indent: &str, text: &mut String) {
    for (i, child) in node.children.iter().enumerate() {
        let last = i + 1 == node.children.len();
        text.push_str(indent);
        text.push_str(if last { "└── " } else { "├── " });
        text.push_str(child.name);
        text.push('\n');
        let deeper = format!("{indent}{}", if last { "    " } else { "│   " });
        draw_children(child, &deeper, text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diamond_is_drawn_as_the_tree_its_flood_took() {
        let paths = [
            "s1", "s1 s2", "s1 s3",
            "s1 s2 s4",
            // Answers arrive in any order; a longer path before its prefix is fine.
        ];
        assert_eq!(draw(&paths), "s1\n├── s2\n│   └── s4\n└── s3\n");
        let shuffled = ["s1 s2 s4", "s1 s3", "s1", "s1 s2"];
        assert_eq!(draw(&shuffled), "s1\n├── s2\n│   └── s4\n└── s3\n");
    }

    #[test]
    fn deeper_lines_keep_their_rails() {
        let paths = ["a b c d", "a b e", "a f"];
        assert_eq!(
            draw(&paths),
            "a\n├── b\n│   ├── c\n│   │   └── d\n│   └── e\n└── f\n"
        );
    }

    #[test]
    fn odd_input_is_drawn_not_refused() {
        let none: [&str; 0] = [];
        assert_eq!(draw(&none), "");
        assert_eq!(draw(&["  x   y "]), "x\n└── y\n");
        // Two roots (two servents claiming to be first): both are drawn.
        assert_eq!(draw(&["a b", "c"]), "a\n└── b\nc\n");
    }
}
