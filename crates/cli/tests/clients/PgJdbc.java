// The PostgreSQL JDBC driver (Debian's libpostgresql-jdbc-java) against `strata serve
// --pg-listen`: what DBeaver and other JDBC tools do on connect. Run as a single-file program:
//   java -cp /usr/share/java/postgresql.jar PgJdbc.java HOST PORT PASSWORD
// Prints one line per finding; the test compares them.
import java.sql.*;

public class PgJdbc {
    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + args[0] + ":" + args[1] + "/main";
        try (Connection c = DriverManager.getConnection(url, "strata", args[2])) {
            DatabaseMetaData meta = c.getMetaData();
            System.out.println("product " + meta.getDatabaseProductName() + " "
                + meta.getDatabaseMajorVersion());
            try (ResultSet rs = meta.getTables(null, "public", "%", new String[] {"TABLE"})) {
                while (rs.next()) {
                    System.out.println("table " + rs.getString("TABLE_NAME"));
                }
            }
            try (ResultSet rs = meta.getColumns(null, "public", "sales", "%")) {
                while (rs.next()) {
                    System.out.println("column " + rs.getString("COLUMN_NAME") + " "
                        + rs.getString("TYPE_NAME"));
                }
            }
            try (ResultSet rs = meta.getImportedKeys(null, "public", "sales")) {
                while (rs.next()) {
                    System.out.println("imported " + rs.getString("FKCOLUMN_NAME") + " -> "
                        + rs.getString("PKTABLE_NAME") + "." + rs.getString("PKCOLUMN_NAME")
                        + " " + rs.getString("FK_NAME") + " " + rs.getInt("KEY_SEQ"));
                }
            }
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT c.name, sum(s.amount) AS total FROM sales s "
                    + "JOIN customers c ON s.customer_id = c.id WHERE s.amount > ? "
                    + "GROUP BY c.name ORDER BY c.name")) {
                ps.setBigDecimal(1, new java.math.BigDecimal("1.00"));
                try (ResultSet rs = ps.executeQuery()) {
                    while (rs.next()) {
                        System.out.println("row " + rs.getString(1) + " " + rs.getBigDecimal(2));
                    }
                }
            }
            // Five executions: the driver switches to a named server-side statement.
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT count(*) FROM sales WHERE customer_id = ?")) {
                StringBuilder counts = new StringBuilder("counts");
                for (int i = 1; i <= 6; i++) {
                    ps.setLong(1, i % 3);
                    try (ResultSet rs = ps.executeQuery()) {
                        rs.next();
                        counts.append(' ').append(rs.getLong(1));
                    }
                }
                System.out.println(counts);
            }
        }
    }
}
