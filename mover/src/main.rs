fn main() {
    println!("mover");
}
