fn main() {
    println!("kubelab");
}
