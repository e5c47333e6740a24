//! The attribute works on a function declared inside another function, over local types.

use xcs::Operator;

fn main() {
    #[derive(Clone, Debug, PartialEq, Eq, Hash)]
    struct Point {
        x: i32,
    }

    #[xcs::operator]
    fn shift(point: Point, by: i32) -> Point {
        Point { x: point.x + by }
    }

    let out = Shift.call(ShiftInputs::new(Point { x: 1 }, 2)).unwrap();
    assert_eq!(out, Point { x: 3 });
    assert!(Shift.__xcs_cache_support().is_some());
}
