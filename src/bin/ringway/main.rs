//! The ringway command-line tool.
fn main() {
    println!("ringway");
}
